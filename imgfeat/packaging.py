"""The library as a zip for `spark-submit --py-files`: how imgfeat reaches executors on a cluster.

The zip is named by its content hash, so a rebuild after a code change gets a new name (executors
never run a stale cached copy) and an unchanged tree reuses the same file.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import zipfile
from pathlib import Path

from imgfeat import paths


def _sources() -> list[Path]:
    """The library's modules and the templates it renders (the run report's)."""
    pkg = paths.REPO / "imgfeat"
    files = [*pkg.rglob("*.py"), *(pkg / "templates").glob("*.html")]
    return sorted(p for p in files if "__pycache__" not in p.parts)


def build_zip(out_dir: Path | None = None) -> Path:
    out_dir = Path(out_dir or paths.REPO / "build")
    files = _sources()
    digest = hashlib.sha256()
    for f in files:
        digest.update(str(f.relative_to(paths.REPO)).encode() + b"\0" + f.read_bytes())
    target = out_dir / f"imgfeat-{digest.hexdigest()[:12]}.zip"
    if target.exists():
        return target
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in files:
            # Fixed timestamps: the same sources give the same bytes.
            info = zipfile.ZipInfo(str(f.relative_to(paths.REPO)), date_time=(2020, 1, 1, 0, 0, 0))
            zf.writestr(info, f.read_bytes(), zipfile.ZIP_DEFLATED)
    out_dir.mkdir(parents=True, exist_ok=True)
    # A temporary file of its own (two builds may run at once), then an atomic replace: the same
    # sources give the same bytes, so whichever build lands last leaves the same zip.
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=out_dir)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(buf.getvalue())
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


if __name__ == "__main__":
    print(build_zip())
