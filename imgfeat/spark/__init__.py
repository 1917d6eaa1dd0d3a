"""The distributor: the only package that knows about Spark sessions, Hadoop file systems and
checkpoint commits. Stage logic over batches lives in imgfeat.stages; what needs whole DataFrames
(reuse lookups, publish's split) lives here."""


class StageFailed(RuntimeError):
    """A Spark app failed for a reason its one-line message gives (the app exits with status 1)."""
