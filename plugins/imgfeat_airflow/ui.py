"""The imgfeat pages of the Airflow UI: a run's report and the picture search (a FastAPI app that
plugins/imgfeat_ui.py mounts on the api-server at /imgfeat).

- GET  /imgfeat/runs/{dag_id}/{run_id}/report/index.html  the report of the partition that run published
       (its thumbnails beside it, thumbs/<n>.jpg); the "Report" link on every DAG run leads here.
- GET  /imgfeat/search, POST /imgfeat/search              upload a picture or give an image_id: the k
       most similar published pictures (imgfeat.search.similar, as `python -m imgfeat.cli similar`).
- GET  /imgfeat/picture?warehouse=...&key=dt=<date>/<id>  a published picture's thumbnail, kept box drawn.

Airflow does not protect a plugin's endpoints: each one requires the UI's user, by Airflow's own
check of its JWT (the `_token` cookie of a logged-in browser, or a bearer token), allowed to read
the DAG. A warehouse is served only when it is allowed: under IMGFEAT_ALLOWED_ROOTS when that is set,
else the default warehouse or one that a run of this Airflow published to (its Asset events name it);
a file is served only from inside a report's directory. Uploads are capped at MAX_UPLOAD_BYTES.
"""

from __future__ import annotations

import posixpath
import re
from typing import Annotated

from fastapi import Depends, FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from airflow.api_fastapi.core_api.security import get_user

MAX_UPLOAD_BYTES = 20 << 20
FEATURES_DAG = "image_features"
REPORT_FILE = re.compile(r"^(index\.html|thumbs/\d+(-crop)?\.jpg)$")

app = FastAPI(title="imgfeat: run reports and picture search")
User = Annotated[object, Depends(get_user)]


@app.middleware("http")
async def _cap_uploads(request: Request, call_next):
    """An upload that says it is too big is refused before its body is read (the handler checks
    the bytes too: a chunked body says nothing)."""
    if int(request.headers.get("content-length") or 0) > MAX_UPLOAD_BYTES + (64 << 10):
        return Response(f"the upload is larger than {MAX_UPLOAD_BYTES >> 20} MB", status_code=413)
    return await call_next(request)


def _may_read(user, dag_id: str) -> None:
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagDetails

    if not get_auth_manager().is_authorized_dag(method="GET", details=DagDetails(id=dag_id), user=user):
        raise HTTPException(403, f"not allowed to read DAG {dag_id}")


def _published_partitions(dag_id: str | None = None, run_id: str | None = None) -> list[tuple[str, str]]:
    """(warehouse_root, partition_date) named by publish's events on the features Asset, newest
    first: of one run, or of every run."""
    from sqlalchemy import select

    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from imgfeat import params

    from .params import FEATURES

    query = (select(AssetEvent.extra).join(AssetModel, AssetEvent.asset_id == AssetModel.id)
             .where(AssetModel.name == FEATURES.name).order_by(AssetEvent.timestamp.desc()))
    if dag_id is not None:
        query = query.where(AssetEvent.source_dag_id == dag_id, AssetEvent.source_run_id == run_id)
    found = []
    with create_session() as session:
        for extra in session.scalars(query):
            try:
                found += [p for p in params.asset_event_partitions([extra]) if p not in found]
            except params.ParamError:
                continue  # an event posted by hand without a valid partition
    return found


def allowed_warehouses() -> list[str]:
    """IMGFEAT_ALLOWED_ROOTS when set; else the DAG's default warehouse and those publish named."""
    from imgfeat import params

    from .params import PARAMS

    if allowed := params.allowed_roots():
        return allowed
    default = PARAMS["warehouse_root"].value.rstrip("/")
    return list(dict.fromkeys([default] + [w for w, _ in _published_partitions()]))


def _check_warehouse(root: str, named_by_publish: bool = False) -> str:
    """`root` normalised, when this Airflow serves it. params.warehouse_root refuses a root outside
    IMGFEAT_ALLOWED_ROOTS (when set); without it, a root publish's event named is served, and any
    other must be the default or named by some publish."""
    from imgfeat import params

    try:
        root = params.warehouse_root(root, "warehouse")
    except params.ParamError as e:
        raise HTTPException(403, str(e)) from None
    if named_by_publish or params.allowed_roots():
        return root
    if not any(root == a or root.startswith(a + "/") for a in allowed_warehouses()):
        raise HTTPException(403, f"warehouse {root!r} is not one this Airflow serves")
    return root


@app.get("/runs/{dag_id}/{run_id}/report/{name:path}")
def run_report(dag_id: str, run_id: str, name: str, user: User) -> Response:
    from imgfeat import storage
    from imgfeat.layout import Warehouse

    _may_read(user, dag_id)
    name = posixpath.normpath(name)
    if not REPORT_FILE.match(name):  # "..", absolute paths, anything not a report's own file
        raise HTTPException(403, f"{name!r} is not a file of a run report")
    partitions = _published_partitions(dag_id, run_id)
    if not partitions:
        raise HTTPException(404, f"run {run_id} of {dag_id} has published no partition (yet)")
    warehouse, date = partitions[0]
    page = Warehouse(_check_warehouse(warehouse, named_by_publish=True)).report(date)
    data = storage.read_bytes(posixpath.join(posixpath.dirname(page), name))
    if data is None:
        raise HTTPException(404, f"no {name} in the report of dt={date} in {warehouse}")
    return Response(data, media_type="text/html; charset=utf-8" if name.endswith(".html") else "image/jpeg")


@app.get("/runs/{dag_id}/{run_id}/report")
def run_report_root(dag_id: str, run_id: str, request: Request) -> Response:
    return RedirectResponse(f"{request.url.path}/index.html")


@app.get("/picture")
def picture(warehouse: str, key: str, user: User) -> Response:
    from imgfeat import decode, report, search

    _may_read(user, FEATURES_DAG)
    try:
        data, row = search.published_picture(_check_warehouse(warehouse), key)
        thumb, _ = report.thumbnails(data, row["width"], row["height"], (row["x1"], row["y1"], row["x2"], row["y2"]),
                                     row["label"])
    except (search.SearchError, decode.BadImage) as e:
        raise HTTPException(404, str(e)) from None
    return Response(thumb, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=300"})


def _page(**values) -> HTMLResponse:
    from imgfeat import report, search

    defaults = {"warehouses": allowed_warehouses(), "warehouse": None, "image_id": "", "k": 12, "hits": None,
                "asked": None, "index": None, "error": None, "candidates": search.RERANK_CANDIDATES}
    status = values.pop("status", 200)
    return HTMLResponse(report.render_template("search.html", **{**defaults, **values}), status_code=status)


@app.get("/search", response_class=HTMLResponse)
def search_form(user: User) -> HTMLResponse:
    _may_read(user, FEATURES_DAG)
    return _page()


@app.post("/search", response_class=HTMLResponse)
def search_submit(user: User, warehouse: Annotated[str, Form()], k: Annotated[int, Form()] = 12,
                  image_id: Annotated[str, Form()] = "", picture: Annotated[UploadFile | None, File()] = None) -> HTMLResponse:
    from imgfeat import search

    _may_read(user, FEATURES_DAG)
    warehouse = _check_warehouse(warehouse)
    data = picture.file.read(MAX_UPLOAD_BYTES + 1) if picture is not None and picture.filename else None
    if data is not None and len(data) > MAX_UPLOAD_BYTES:
        raise HTTPException(413, f"the picture is larger than {MAX_UPLOAD_BYTES >> 20} MB")
    if not 1 <= k <= 100:
        raise HTTPException(422, "k must be between 1 and 100")
    values = {"warehouse": warehouse, "image_id": image_id, "k": k}
    try:
        index, hits, asked = search.similar(warehouse, k, picture=data, name=picture.filename if data else "query",
                                            image_id=image_id.strip() or None if data is None else None)
    except search.SearchError as e:
        return _page(**values, error=str(e), status=400)
    return _page(**values, hits=hits, asked=asked, index=f"{index.code}, {len(index)} images")
