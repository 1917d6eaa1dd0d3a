"""The distributor: the only package that knows about Spark sessions, Hadoop file systems and
checkpoint commits. Stage logic lives in imgfeat.stages."""
