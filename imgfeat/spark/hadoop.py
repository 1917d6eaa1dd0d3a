"""Hadoop FileSystem calls through the Spark JVM: one API for local paths, file:// and hdfs://."""

from __future__ import annotations


class PartialRead(IOError):
    """A file's bytes and its length as the NameNode reports it differ: it is being written."""


class HadoopFS:
    def __init__(self, spark):
        self._jvm = spark.sparkContext._jvm
        self._conf = spark.sparkContext._jsc.hadoopConfiguration()
        self._gateway = spark.sparkContext._gateway

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

    def size(self, path: str) -> int:
        """Bytes of the files under `path` (0 when it does not exist)."""
        fs, p = self._fs(path), self._path(path)
        return fs.getContentSummary(p).getLength() if fs.exists(p) else 0

    def delete(self, path: str) -> None:
        self._fs(path).delete(self._path(path), True)

    def mkdirs(self, path: str) -> None:
        self._fs(path).mkdirs(self._path(path))

    def list_status(self, path: str) -> list[tuple[str, int]]:
        """(name, modification time in ms) of the entries directly under the directory `path`."""
        return [(st.getPath().getName(), st.getModificationTime())
                for st in self._fs(path).listStatus(self._path(path))]

    def rename(self, src: str, dst: str) -> bool:
        """Hadoop's rename: False when it fails. Beware: onto an existing directory it moves `src`
        INTO it; callers never rename onto an existing path."""
        return self._fs(src).rename(self._path(src), self._path(dst))

    def rename_overwrite(self, src: str, dst: str) -> bool:
        """Atomically replace the file `dst` by the file `src` (FileContext's rename with OVERWRITE,
        atomic on HDFS and local file systems); False when the file system does not support it."""
        jvm = self._jvm
        try:
            src_p, dst_p = self._path(src), self._path(dst)
            fc = jvm.org.apache.hadoop.fs.FileContext.getFileContext(self._fs(src).getUri(), self._conf)
            opts = self._gateway.new_array(jvm.org.apache.hadoop.fs.Options.Rename, 1)
            opts[0] = jvm.org.apache.hadoop.fs.Options.Rename.OVERWRITE
            fc.rename(src_p, dst_p, opts)
            return True
        except Exception as e:  # noqa: BLE001 - py4j wraps every Java exception
            if "UnsupportedFileSystemException" in str(e) or "UnsupportedOperationException" in str(e):
                return False
            raise

    def create_new(self, path: str, data: bytes) -> bool:
        """Create the file `path` holding `data` only if it does not exist: False when it does.
        Atomic on HDFS (the NameNode refuses a second create). Local file systems check, then
        create; `imgfeat.lease` uses O_EXCL for local paths instead."""
        try:
            out = self._fs(path).create(self._path(path), False)
        except Exception as e:  # noqa: BLE001 - py4j wraps every Java exception
            if "FileAlreadyExistsException" in str(e) or "AlreadyBeingCreatedException" in str(e):
                return False
            raise
        try:
            out.write(bytearray(data))
        finally:
            out.close()
        return True

    def modification_time(self, path: str) -> int:
        return self._fs(path).getFileStatus(self._path(path)).getModificationTime()

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
        if len(data) != length:  # on HDFS a file being written is visible before it is closed
            raise PartialRead(f"{path}: read {len(data)} bytes, its length is {length} (being written?)")
        return data
