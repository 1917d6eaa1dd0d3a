"""Where code lives: rules of the module layout that a move could silently break."""

import subprocess
import sys

from imgfeat import paths


def test_stage_logic_imports_no_spark():
    """imgfeat.stages is plain functions over pandas batches: only imgfeat.spark knows Spark."""
    code = ("import sys; import imgfeat.stages.ingest, imgfeat.stages.detect, imgfeat.stages.crop, "
            "imgfeat.stages.embed; print(sorted(m for m in sys.modules if m.split('.')[0] == 'pyspark'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=paths.REPO, check=True)
    assert out.stdout.strip() == "[]"
