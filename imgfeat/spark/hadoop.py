"""Hadoop FileSystem calls through the Spark JVM: one API for local paths, file:// and hdfs://."""

from __future__ import annotations


class HadoopFS:
    def __init__(self, spark):
        self._jvm = spark.sparkContext._jvm
        self._conf = spark.sparkContext._jsc.hadoopConfiguration()

    def _path(self, path: str):
        return self._jvm.org.apache.hadoop.fs.Path(path)

    def _fs(self, path: str):
        return self._path(path).getFileSystem(self._conf)

    def qualify(self, path: str) -> str:
        p = self._path(path)
        return p.getFileSystem(self._conf).makeQualified(p).toString()

    def exists(self, path: str) -> bool:
        return self._fs(path).exists(self._path(path))

    def is_dir(self, path: str) -> bool:
        return self._fs(path).isDirectory(self._path(path))

    def list_names(self, path: str) -> list[str]:
        """Names of the entries directly under the directory `path`."""
        return [st.getPath().getName() for st in self._fs(path).listStatus(self._path(path))]

    def delete(self, path: str) -> None:
        self._fs(path).delete(self._path(path), True)

    def mkdirs(self, path: str) -> None:
        self._fs(path).mkdirs(self._path(path))

    def rename(self, src: str, dst: str) -> bool:
        return self._fs(src).rename(self._path(src), self._path(dst))

    def write_text(self, path: str, text: str) -> None:
        self.write_bytes(path, text.encode("utf-8"))

    def write_bytes(self, path: str, data: bytes) -> None:
        out = self._fs(path).create(self._path(path), True)
        try:
            out.write(bytearray(data))
        finally:
            out.close()

    def read_text(self, path: str) -> str:
        return self.read_bytes(path).decode("utf-8")

    def read_bytes(self, path: str) -> bytes:
        fs = self._fs(path)
        p = self._path(path)
        length = fs.getFileStatus(p).getLen()
        stream = fs.open(p)
        try:
            buf = self._jvm.java.io.ByteArrayOutputStream()
            self._jvm.org.apache.hadoop.io.IOUtils.copyBytes(stream, buf, 65536, False)
            data = bytes(buf.toByteArray())
        finally:
            stream.close()
        assert len(data) == length
        return data
