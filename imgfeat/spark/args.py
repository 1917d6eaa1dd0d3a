"""The arguments of the Spark apps: one parser per app, validated before any SparkSession exists.

Every stage app accepts the same arguments, so the DAG passes one argument list to all five. A bad
value exits with status 2 and a message naming it (or raises `InvalidArguments`, for Airflow's
operators, which refuse a bad parameter before spark-submit). Values are checked by imgfeat.params.
"""

from __future__ import annotations

import argparse

from imgfeat import params, paths
from imgfeat.layout import INFERENCE_STAGES


def typed(validator):
    """An argparse `type` from a params validator: its ParamError becomes argparse's message."""
    def convert(value):
        try:
            return validator(value)
        except params.ParamError as e:
            raise argparse.ArgumentTypeError(str(e).split(": ", 1)[1]) from None
    convert.__name__ = validator.__name__
    return convert


class InvalidArguments(ValueError):
    """An app argument is invalid; the message names it (`argument --code-bits: ...`)."""


class Parser(argparse.ArgumentParser):
    """An ArgumentParser that raises InvalidArguments instead of exiting, when `raise_errors`."""

    raise_errors = False

    def error(self, message):
        if self.raise_errors:
            raise InvalidArguments(message)
        super().error(message)


def stage_parser(stage: str) -> Parser:
    """The parser of stage `stage`'s app (the same arguments for all five)."""
    p = Parser(prog=f"spark-submit spark_apps/{stage}.py", description=f"imgfeat stage '{stage}' for one date partition")
    p.add_argument("--partition-date", required=True, type=typed(params.partition_date), help="YYYY-MM-DD")
    p.add_argument("--input-root", required=True, type=typed(lambda v: params.root(v, "input_root")),
                   help="input root (local path or hdfs:// URI); images under INPUT/dt=<date>/")
    p.add_argument("--warehouse-root", required=True, type=typed(params.warehouse_root),
                   help="warehouse root (local path or hdfs:// URI)")
    p.add_argument("--score-threshold", type=typed(params.score_threshold),
                   default=params.DEFAULTS["score_threshold"], help="minimum detection score, in (0, 1)")
    p.add_argument("--code-bits", type=typed(params.code_bits), default=params.DEFAULTS["code_bits"],
                   help="binary code length K (multiple of 8)")
    p.add_argument("--engine", type=typed(params.engine), default=params.DEFAULTS["engine"],
                   help="inference engine for detect and embed")
    p.add_argument("--reuse", type=typed(params.boolean), default=True, metavar="{true,false}",
                   help="reuse published results of images whose content (sha256) was already published "
                        "with the same model, instead of inferring again (default: true)")
    p.add_argument("--max-inference-failures", default=params.DEFAULTS["max_inference_failures"],
                   type=typed(lambda v: params.share(v, "max_inference_failures")),
                   help="detect and embed fail when more than this share of the images they infer (and more "
                        "than one) fail inference; fewer are quarantined one by one (default: %(default)s)")
    p.add_argument("--force", type=typed(lambda v: params.boolean(v, "force")), default=False,
                   metavar="{true,false}", help="the run recomputes current checkpoints: the partition's own "
                                                "earlier rows are not reused (default: false)")
    p.add_argument("--keep-checkpoints-days", default=params.DEFAULTS["keep_checkpoints_days"],
                   type=typed(lambda v: params.non_negative_int(v, "keep_checkpoints_days")),
                   help="after publishing, delete the intermediate checkpoints (ingest to embed) of partitions "
                        "published more than this many days ago; 0 keeps them (default: %(default)s)")
    p.add_argument("--late-partitions", type=typed(lambda v: params.partition_dates(v, "late_partitions")),
                   default=[], metavar="DATES", help="comma-separated earlier partitions this run revisits for late "
                                                     "files after publishing (recorded in the run manifest)")
    p.add_argument("--revisited-by", type=typed(lambda v: params.partition_date(v, "revisited_by") if v else None),
                   default=None, metavar="DATE", help="this run revisits the partition for late files on behalf of "
                                                      "the run of DATE (recorded in the run manifest)")
    p.add_argument("--model-dir", default=str(paths.model_dir()), help="converted model directory")
    p.add_argument("--batch-size", type=typed(lambda v: params.positive_int(v, "batch_size")),
                   default=params.DEFAULTS["batch_size"], help="images per inference batch")
    p.add_argument("--images-per-task", type=typed(lambda v: params.positive_int(v, "images_per_task")),
                   default=128, help="images per Spark task (sets the number of partitions)")
    p.add_argument("--threads", type=int, default=0,
                   help="inference threads per task (0: the executor's cores)")
    return p


def parse(stage: str, argv: list[str], raise_errors: bool = False) -> argparse.Namespace:
    """Parse and validate; exits with status 2 (or raises `InvalidArguments`) on a bad value."""
    parser = stage_parser(stage)
    parser.raise_errors = raise_errors
    args = parser.parse_args(argv)
    args.weights = None
    if stage in INFERENCE_STAGES:
        from imgfeat.engines.models import ModelError, load_manifest

        try:
            args.model_manifest = load_manifest(args.model_dir, verify=True)
        except ModelError as e:
            parser.error(f"argument --model-dir: {e}")
        args.weights = weights_digest(args.model_manifest)
    return args


def weights_digest(manifest: dict) -> str:
    """Names the weights the models were converted from: changed weights never pass for old ones."""
    return manifest["graph_sha256"][:12]
