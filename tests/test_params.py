import pytest

from imgfeat import params


def test_partition_date_accepts_a_calendar_date():
    assert params.partition_date("2026-02-28") == "2026-02-28"


@pytest.mark.parametrize("bad", ["2026-02-30", "20260201", "2026-2-1", "", None, "2026-01-01; rm -rf /"])
def test_partition_date_refuses_and_names_the_parameter(bad):
    with pytest.raises(params.ParamError, match=r"^DATE: "):
        params.partition_date(bad, "DATE")


def test_roots(tmp_path):
    assert params.input_root(str(tmp_path)) == str(tmp_path)
    assert params.root("hdfs://127.0.0.1:9000/images/", "input_root") == "hdfs://127.0.0.1:9000/images"
    with pytest.raises(params.ParamError, match="^input_root: .*is not a directory"):
        params.input_root(str(tmp_path / "missing"))
    with pytest.raises(params.ParamError, match=r"^warehouse_root: .*'\.\.'"):
        params.warehouse_root(f"{tmp_path}/../etc")
    with pytest.raises(params.ParamError, match="^input_root: unsupported scheme 'http'"):
        params.input_root("http://example.org/x")
    with pytest.raises(params.ParamError, match="^input_root: .*names no NameNode"):
        params.input_root("hdfs:///images")
    # A warehouse that does not exist yet is fine when its nearest existing parent is writable.
    assert params.warehouse_root(str(tmp_path / "a" / "b")) == str(tmp_path / "a" / "b")
    (tmp_path / "file").write_text("x")
    with pytest.raises(params.ParamError, match="^warehouse_root: .*is a file"):
        params.warehouse_root(str(tmp_path / "file" / "wh"))


@pytest.mark.parametrize("value,ok", [("0.5", 0.5), (0.01, 0.01), (0, None), (1, None), ("x", None)])
def test_score_threshold(value, ok):
    if ok is None:
        with pytest.raises(params.ParamError, match="^score_threshold: "):
            params.score_threshold(value)
    else:
        assert params.score_threshold(value) == ok


@pytest.mark.parametrize("value,ok", [("0.8", 0.8), (-1, -1.0), (1, 1.0), (1.5, None), (-1.01, None), ("x", None)])
def test_duplicate_similarity(value, ok):
    if ok is None:
        with pytest.raises(params.ParamError, match="^duplicate_similarity: expected a number in \\[-1, 1\\]"):
            params.similarity(value)
    else:
        assert params.similarity(value) == ok


@pytest.mark.parametrize("value,ok", [("64", 64), (32, 32), (128, 128), (12, None), (0, None), (2048, None), ("6.4", None)])
def test_code_bits(value, ok):
    if ok is None:
        with pytest.raises(params.ParamError, match="^code_bits: "):
            params.code_bits(value)
    else:
        assert params.code_bits(value) == ok


def test_max_crops_is_bounded_by_what_the_driver_holds():
    assert params.max_crops("10000") == 10000 == params.MAX_CROPS
    with pytest.raises(params.ParamError, match="^max_crops: at most 10000 .*, got 10001$"):
        params.max_crops(10001)
    with pytest.raises(params.ParamError, match="^max_crops: expected a positive integer, got 0$"):
        params.max_crops(0)


def test_engine():
    assert params.engine("openvino") == "openvino"
    with pytest.raises(params.ParamError, match="^engine: unknown engine 'tensorrt'"):
        params.engine("tensorrt")


def test_roots_must_live_under_the_allowed_roots(monkeypatch, tmp_path):
    monkeypatch.setenv("IMGFEAT_ALLOWED_ROOTS", f"{tmp_path}/images, hdfs://nn:8020/warehouse/")
    assert params.allowed_roots() == [f"{tmp_path}/images", "hdfs://nn:8020/warehouse"]
    (tmp_path / "images" / "shop").mkdir(parents=True)
    assert params.input_root(str(tmp_path / "images" / "shop")) == str(tmp_path / "images" / "shop")
    assert params.warehouse_root("hdfs://nn:8020/warehouse/imgfeat") == "hdfs://nn:8020/warehouse/imgfeat"
    (tmp_path / "images-other").mkdir()
    for value, name in ((str(tmp_path / "images-other"), "input_root"), ("hdfs://nn:8020/elsewhere", "warehouse_root"),
                        ("hdfs://other:8020/warehouse", "warehouse_root")):
        with pytest.raises(params.ParamError, match=f"^{name}: '{value}' is outside the allowed roots"):
            params.input_root(value) if name == "input_root" else params.warehouse_root(value)
    monkeypatch.delenv("IMGFEAT_ALLOWED_ROOTS")
    assert params.warehouse_root("hdfs://other:8020/warehouse") == "hdfs://other:8020/warehouse"
