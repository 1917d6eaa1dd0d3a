"""BigDL engine: the SSD-MobileNetV2 detector and its backbone rebuilt from Intel BigDL dllib's
stock layers, run on BigDL's MKL-DNN engine.

  submit   what spark-submit needs for a BigDL app (jars, confs, JVM options, driver memory)
  convert  `make setup`: the frozen TF graph read without TensorFlow, batch-norms folded, the
           networks rebuilt from BigDL layers and saved in BigDL's format
  runtime  load, unpack the heads, distributed predict, the in-process engine, init_spark
           (the pre- and post-processing are imgfeat.engines.ssd's, shared with OpenVINO)

Import the module you need: this package imports none of them, so the Airflow operator's
`imgfeat.engines.bigdl.submit` loads neither numpy nor BigDL.
"""
