"""The REST API of ARCHITECTURE.md: thin views over selectors and services."""
from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from django.http import FileResponse, Http404, HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from masksel_core import DataError
from masksel_core.export import mask_document, mask_png, npy_bytes

from . import api_schema as doc
from . import samples, selectors, services
from .models import Dataset, MaskConfig, Run


def dataset_json(row: Dataset) -> dict[str, Any]:
    return {
        "id": row.pk, "name": row.name, "builtin": row.builtin or None, "input_shape": row.input_shape,
        "num_classes": row.num_classes, "num_train": row.num_train, "num_test": row.num_test,
        "channel_names": row.channel_names, "owned": row.owner_id is not None,
    }


class DatasetList(APIView):
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(responses=doc.DatasetOut(many=True), summary="Data sets you may use (built-ins and yours)")
    def get(self, request: Request) -> Response:
        return Response([dataset_json(row) for row in selectors.datasets_visible_to(request.user)])

    @extend_schema(request={"multipart/form-data": doc.DatasetUpload}, responses={201: doc.DatasetOut, 400: doc.Error},
                   summary="Upload an .npz; refused with a message naming the problem")
    def post(self, request: Request) -> Response:
        upload = request.FILES.get("file")
        if upload is None:
            return Response({"error": "file is required (multipart field 'file')"}, status=400)
        row = services.dataset_create(owner=request.user, name=request.data.get("name", ""), upload=upload)
        return Response(dataset_json(row), status=status.HTTP_201_CREATED)


class DatasetDetail(APIView):
    @extend_schema(responses={200: doc.DatasetOut, 404: doc.Error})
    def get(self, request: Request, dataset_id: int) -> Response:
        return Response(dataset_json(selectors.dataset_get(request.user, dataset_id)))


class DatasetPreview(APIView):
    """The first sample of each class, per channel, as 8-bit grey images (base64)."""

    @extend_schema(responses={200: OpenApiTypes.OBJECT, 404: doc.Error})
    def get(self, request: Request, dataset_id: int) -> Response:
        return Response(selectors.dataset_preview(selectors.dataset_get(request.user, dataset_id)))


class DatasetSamples(APIView):
    """Samples packed by `masksel_core.transfer`: whole, or only what a run's trained mask selects."""

    @extend_schema(
        parameters=[
            OpenApiParameter("run", int, description="pack only what this (succeeded) run's mask selects"),
            OpenApiParameter("start", int, description="first sample (default 0)"),
            OpenApiParameter("count", int, description=f"how many (default 256, at most {samples.MAX_COUNT})"),
            OpenApiParameter("split", str, enum=["test", "train"], description="default test"),
            OpenApiParameter("dtype", str, enum=list(samples.DTYPE_CHOICES),
                             description="value type on the wire (default float32; the others are lossy)"),
            OpenApiParameter("compress", bool, description="zlib the body (lossless)")],
        responses={(200, "application/octet-stream"): OpenApiTypes.BINARY, 400: doc.Error, 404: doc.Error},
        summary="Packed samples (masksel_core.transfer.unpack reads them); headers give the total and the plan")
    def get(self, request: Request, dataset_id: int) -> HttpResponse:
        dataset = selectors.dataset_get(request.user, dataset_id)
        run_param = request.query_params.get("run")
        run = selectors.run_get(request.user, run_param) if run_param not in (None, "") else None
        try:
            page = samples.sample_page(dataset, run, request.query_params)
        except (samples.SampleRequestError, DataError) as exc:
            return Response({"error": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
        response = HttpResponse(page.payload, content_type="application/octet-stream")
        response["Content-Length"] = str(len(page.payload))
        response["X-Masksel-Total"] = str(page.total)
        response["X-Masksel-Plan"] = page.plan.plan_id
        return response


class RunList(APIView):
    parser_classes = [JSONParser]

    @extend_schema(responses=doc.RunOut(many=True), summary="Your runs, newest first (500 at most; ?ids=1,2,3)",
                   parameters=[OpenApiParameter("ids", str, description="only these runs (comma-separated ids)")])
    def get(self, request: Request) -> Response:
        runs = selectors.runs_visible_to(request.user).order_by("-id")
        if request.query_params.get("ids"):
            ids = [part for part in request.query_params["ids"].split(",") if part.strip().isdigit()]
            runs = runs.filter(pk__in=[int(part) for part in ids])
        return Response([selectors.run_summary(run, with_latest=False) for run in runs[:500]])

    @extend_schema(request=doc.RunCreate, responses={201: doc.RunCreated, 400: doc.Error},
                   summary="Queue a run: a data set, a mask (or chain), a model and any TrainConfig option")
    def post(self, request: Request) -> Response:
        run = services.run_create(owner=request.user, data=request.data)
        return Response({"id": run.pk, "status": run.status}, status=status.HTTP_201_CREATED)


class RunBatch(APIView):
    parser_classes = [JSONParser]

    @extend_schema(request=OpenApiTypes.OBJECT, responses={200: OpenApiTypes.OBJECT, 400: doc.Error},
                   summary='{"action": "cancel"|"requeue"|"delete", "ids": [...]}: "ok" or the reason, per run')
    def post(self, request: Request) -> Response:
        body = request.data if isinstance(request.data, dict) else {}
        ids = body.get("ids")
        if not isinstance(ids, list) or not ids or not all(isinstance(i, int) and not isinstance(i, bool)
                                                           for i in ids):
            raise services.ServiceError("ids must be a non-empty list of run ids")
        runs = selectors.runs_by_ids(request.user, ids)
        return Response({"results": services.runs_batch(runs, str(body.get("action", "")))})


class MaskConfigList(APIView):
    parser_classes = [JSONParser]

    @extend_schema(responses=OpenApiTypes.OBJECT, summary="Your saved configurations")
    def get(self, request: Request) -> Response:
        rows = MaskConfig.objects.filter(owner=request.user)
        return Response([{"id": row.pk, "name": row.name, "config": row.config} for row in rows])

    @extend_schema(request=OpenApiTypes.OBJECT, responses={201: OpenApiTypes.OBJECT, 400: doc.Error},
                   summary='Save {"name": ..., "config": {run options}}; use it with "mask_config": id in a run')
    def post(self, request: Request) -> Response:
        body = request.data if isinstance(request.data, dict) else {}
        row = services.mask_config_create(owner=request.user, name=body.get("name", ""), config=body.get("config"))
        return Response({"id": row.pk, "name": row.name, "config": row.config}, status=status.HTTP_201_CREATED)


class SweepCreate(APIView):
    parser_classes = [JSONParser]

    @extend_schema(request=OpenApiTypes.OBJECT, responses={201: doc.RunCreated(many=True), 400: doc.Error},
                   summary="One run per (lambda_init, lambda_factor) cell and seed: the options of a run, with "
                           "lambda_init and lambda_factor as lists and seeds a count; optional name (the tag)")
    def post(self, request: Request) -> Response:
        runs = services.run_sweep(owner=request.user, data=request.data)
        return Response([{"id": run.pk, "status": run.status} for run in runs], status=status.HTTP_201_CREATED)


class RunDetail(APIView):
    parser_classes = [JSONParser]

    @extend_schema(responses={200: doc.RunOut, 404: doc.Error})
    def get(self, request: Request, run_id: int) -> Response:
        return Response(selectors.run_summary(selectors.run_get(request.user, run_id)))

    @extend_schema(request=doc.RunAnnotate, responses={200: doc.RunOut, 400: doc.Error, 404: doc.Error})
    def patch(self, request: Request, run_id: int) -> Response:
        """Change tags (a list of strings), notes (text) and, while the run is queued, its priority (-10..10)."""
        run = services.run_annotate(selectors.run_get(request.user, run_id), request.data)
        return Response(selectors.run_summary(run))

    @extend_schema(responses={204: None, 400: doc.Error, 404: doc.Error})
    def delete(self, request: Request, run_id: int) -> Response:
        services.run_delete(selectors.run_get(request.user, run_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class RunMetrics(APIView):
    @extend_schema(responses={200: doc.MetricRow(many=True), 404: doc.Error}, summary="Every epoch so far")
    def get(self, request: Request, run_id: int) -> Response:
        return Response(selectors.run_metrics(selectors.run_get(request.user, run_id)))


class RunCancel(APIView):
    @extend_schema(request=None, responses={200: doc.RunCreated, 400: doc.Error, 404: doc.Error})
    def post(self, request: Request, run_id: int) -> Response:
        run = services.run_cancel(selectors.run_get(request.user, run_id))
        return Response({"id": run.pk, "status": run.status})


def _epoch_param(request: Request) -> int | None:
    raw = request.query_params.get("epoch")
    if raw in (None, ""):
        return None
    try:
        value = int(raw)
    except ValueError:
        raise services.ServiceError(f"epoch must be an integer, got {raw!r}") from None
    if value < 1:
        raise services.ServiceError("epoch must be 1 or more")
    return value


def _attachment(payload: bytes, filename: str, content_type: str) -> HttpResponse:
    response = HttpResponse(payload, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Content-Length"] = str(len(payload))
    return response


class RunDownload(APIView):
    """`mask.json`, `mask.npy`, `model.pt`, `metrics.csv`, `config.json`, `summary.json`, `bundle.zip`."""

    @extend_schema(
        parameters=[OpenApiParameter("name", str, OpenApiParameter.PATH,
                                     enum=["mask.json", "mask.npy", "mask.png", "model.pt", "model.ts", "metrics.csv",
                                           "config.json", "summary.json", "bundle.zip"]),
                    OpenApiParameter("epoch", int, description="the mask of this epoch (mask.json, .npy, .png)")],
        responses={(200, "application/octet-stream"): OpenApiTypes.BINARY, 404: doc.Error},
        operation_id="runs_download", summary="A run's files; the mask of any epoch with ?epoch=N")
    def get(self, request: Request, run_id: int, name: str) -> HttpResponse:
        run = selectors.run_get(request.user, run_id)
        prefix = f"run{run.pk}"
        epoch_asked = _epoch_param(request) if name.startswith("mask.") else None
        final_json = Path(run.artifact_dir) / "mask.json"
        if name == "mask.json" and epoch_asked is None and run.is_final and final_json.is_file():
            # The trained mask as written by the core: for chains it also lists every stage.
            return _attachment(final_json.read_bytes(), f"{prefix}-mask.json", "application/json")
        if name.startswith("mask."):
            selected, fraction, epoch = selectors.epoch_selected(run, epoch_asked)
            if name == "mask.png":
                return _attachment(mask_png(selected), f"{prefix}-epoch{epoch}-mask.png", "image/png")
            if name == "mask.npy":
                return _attachment(npy_bytes(selected), f"{prefix}-epoch{epoch}-mask.npy", "application/octet-stream")
            document = mask_document(run.mask_type, run.dataset.input_shape, selected, fraction)
            return _attachment(json.dumps(document).encode(), f"{prefix}-epoch{epoch}-mask.json", "application/json")
        if name == "bundle.zip":
            return _attachment(_bundle(run), f"{prefix}-bundle.zip", "application/zip")
        path = Path(run.artifact_dir) / name
        if name not in ("model.pt", "model.ts", "metrics.csv", "config.json", "summary.json") or not path.is_file():
            raise Http404(f"{name} is not available for run {run.pk} (status {run.status})")
        response = FileResponse(path.open("rb"), as_attachment=True, filename=f"{prefix}-{name}")
        response["Content-Length"] = str(path.stat().st_size)
        return response


BUNDLE_README = """masksel run {run_id}: {mask_type} mask on {dataset}, model {model}.

mask.npy holds the discrete mask (uint8, 1 = transfer this element), mask.json the same with
its input shape and transferred fraction. To apply it, zero what is not selected:

    import numpy as np, torch
    from masksel_core import create_model
    mask = np.load("mask.npy")            # {shape}
    model = create_model("{model}", {input_shape}, {num_classes})
    model.load_state_dict(torch.load("model.pt", weights_only=True))
    x_masked = x * torch.from_numpy(mask).float()  # broadcast over (B, C, H, W){broadcast}

Or, with nothing but torch: model.ts is the network behind its frozen mask and takes the full input
(for JPEG/thumbnail chains: the merged picked versions):

    net = torch.jit.load("model.ts")
    prediction = net(x).argmax(dim=1)

mask.png shows the mask: channels side by side, transferred cells in green. summary.json says how the
run ended, the model's accuracy on the test split and any warning (an empty mask, accuracy near chance,
a target not reached); metrics.csv has one row per epoch, its phase last (warmup, select, finalize).
"""


def _bundle(run: Run) -> bytes:
    selected, fraction, _ = selectors.epoch_selected(run, None)
    directory = Path(run.artifact_dir)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("mask.npy", npy_bytes(selected))
        archive.writestr("mask.json", json.dumps(mask_document(run.mask_type, run.dataset.input_shape, selected,
                                                                fraction)))
        archive.writestr("mask.png", mask_png(selected))
        for name in ("model.pt", "model.ts", "metrics.csv", "config.json", "summary.json"):
            if (directory / name).is_file():
                archive.write(directory / name, name)
        broadcast = "; channel masks: mask[:, None, None]" if run.mask_type.startswith("channel") else ""
        archive.writestr("README.txt", BUNDLE_README.format(
            run_id=run.pk, mask_type=run.mask_type, dataset=run.dataset.name, model=run.model_name,
            shape=list(np.shape(selected)), input_shape=tuple(run.dataset.input_shape),
            num_classes=run.dataset.num_classes, broadcast=broadcast))
    return buffer.getvalue()
