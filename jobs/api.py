"""The REST API: thin views over selectors and services."""
from __future__ import annotations

from django.http import (
    FileResponse,
    HttpRequest,
    HttpResponse,
    HttpResponsePermanentRedirect,
    HttpResponseRedirect,
    JsonResponse,
)
from django.urls import Resolver404, resolve
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from masksel_core import DataError, StoreError

from . import (
    dataset_services,
    downloads,
    inputs,
    run_files,
    samples,
    selectors,
    services,
    study_selectors,
    study_services,
)
from . import serializers as out
from .errors import ServiceError, public_text
from .parsers import JSONParser


class DatasetList(APIView):
    parser_classes = [MultiPartParser, FormParser, JSONParser]

    @extend_schema(responses=out.DatasetSerializer(many=True), summary="Data sets you may use (built-ins and yours)")
    def get(self, request: Request) -> Response:
        return Response(out.DatasetSerializer(selectors.datasets_visible_to(request.user), many=True).data)

    @extend_schema(request={"multipart/form-data": inputs.DatasetUpload, "application/json": inputs.DatasetRegister},
                   responses={201: out.DatasetSerializer, 400: out.Error},
                   summary="Upload an .npz, or register a zarr store by uri; refused with a message naming the "
                           "problem")
    def post(self, request: Request) -> Response:
        upload = request.FILES.get("file")
        if upload is not None:
            row = dataset_services.dataset_create(owner=request.user, name=request.data.get("name", ""),
                                                  upload=upload)
        elif "uri" in request.data:
            given = inputs.parse(inputs.DatasetRegister, request.data)
            row = dataset_services.dataset_register(owner=request.user, **given)
        else:
            return Response({"error": "file is required (multipart field 'file'), or a store's uri (JSON {name, uri})"},
                            status=400)
        return Response(out.DatasetSerializer(row).data, status=status.HTTP_201_CREATED)


class DatasetDetail(APIView):
    @extend_schema(responses={200: out.DatasetSerializer, 404: out.Error})
    def get(self, request: Request, dataset_id: int) -> Response:
        return Response(out.DatasetSerializer(selectors.dataset_get(request.user, dataset_id)).data)

    @extend_schema(responses={204: None, 400: out.Error, 404: out.Error},
                   summary="Delete one of your uploads; refused for built-ins and while runs use it")
    def delete(self, request: Request, dataset_id: int) -> Response:
        dataset_services.dataset_delete(selectors.dataset_get(request.user, dataset_id), request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class DatasetPreview(APIView):
    """The first sample of each class, per channel, as 8-bit grey images (base64)."""

    @extend_schema(responses={200: out.Preview, 404: out.Error})
    def get(self, request: Request, dataset_id: int) -> Response:
        preview = dataset_services.dataset_preview(selectors.dataset_get(request.user, dataset_id))
        return Response(out.Preview(preview).data)


class DatasetSamples(APIView):
    """Samples packed by `masksel_core.transfer.packing`: whole, or only what a run's trained mask selects."""

    @extend_schema(
        parameters=[
            OpenApiParameter("run", int, description="pack only what this (succeeded) run's mask selects"),
            OpenApiParameter("whole", bool, description="with run: the same samples of its split, whole (a data set "
                                                        "without a test part is split by the run's seed)"),
            OpenApiParameter("start", int, description="first sample (default 0)"),
            OpenApiParameter("count", int, description=f"how many (default 256, at most {samples.MAX_COUNT})"),
            OpenApiParameter("split", str, enum=["test", "train"], description="default test"),
            OpenApiParameter("dtype", str, enum=list(samples.DTYPE_CHOICES),
                             description="value type on the wire (default float32; the others are lossy)"),
            OpenApiParameter("compress", bool, description="zlib the body (lossless)")],
        responses={(200, "application/octet-stream"): OpenApiTypes.BINARY, 400: out.Error, 404: out.Error,
                   503: out.Error},
        summary="Packed samples (masksel_core.transfer.packing.unpack reads them); headers give the total, the plan "
                "and, for a zarr store, the bytes read from it (X-Masksel-Bytes-Read)")
    def get(self, request: Request, dataset_id: int) -> HttpResponse:
        dataset = selectors.dataset_get(request.user, dataset_id)
        run_param = request.query_params.get("run")
        run = selectors.run_get(request.user, run_param) if run_param not in (None, "") else None
        try:
            page = samples.sample_page(dataset, run, request.query_params)
        except (samples.SampleRequestError, DataError) as exc:
            return Response({"error": public_text(str(exc))}, status=status.HTTP_400_BAD_REQUEST)
        except StoreError as exc:  # the store's bucket or disk failed: not the request's fault
            return Response({"error": public_text(str(exc))}, status=status.HTTP_503_SERVICE_UNAVAILABLE)
        response = HttpResponse(page.payload, content_type="application/octet-stream")
        response["Content-Length"] = str(len(page.payload))
        response["X-Masksel-Total"] = str(page.total)
        response["X-Masksel-Plan"] = page.plan.plan_id
        if page.bytes_read is not None:  # a zarr store: what serving the page read from where it lies
            response["X-Masksel-Bytes-Read"] = str(page.bytes_read)
        if page.chunk_samples:  # pages that start and end on multiples of this read each chunk once
            response["X-Masksel-Chunk-Samples"] = str(page.chunk_samples)
        return response


class RunList(APIView):
    parser_classes = [JSONParser]

    @extend_schema(responses={200: out.RunSerializer(many=True), 400: out.Error},
                   summary="Your runs, newest first (500 at most; ?ids=1,2,3); `latest` is left out here",
                   parameters=[OpenApiParameter("ids", str, description="only these runs (comma-separated ids)")])
    def get(self, request: Request) -> Response:
        rows = selectors.run_list(request.user, **inputs.parse(inputs.RunListQuery, request.query_params))
        return Response(out.RunSerializer(rows, many=True, context={"latest": False}).data)

    @extend_schema(request=inputs.RunCreate, responses={201: out.RunCreated, 400: out.Error},
                   summary="Queue a run: a data set, a mask (or chain), a model and any TrainConfig option")
    def post(self, request: Request) -> Response:
        run = services.run_create(owner=request.user, **inputs.parse(inputs.RunRequest, request.data))
        return Response(out.RunCreated(run).data, status=status.HTTP_201_CREATED)


class RunBatch(APIView):
    parser_classes = [JSONParser]

    @extend_schema(request=inputs.BatchRequest, responses={200: out.BatchResult, 400: out.Error, 404: out.Error},
                   summary='{"action": "cancel"|"requeue"|"delete", "ids": [...]}: "ok" or the reason, per run')
    def post(self, request: Request) -> Response:
        given = inputs.parse(inputs.BatchRequest, request.data)
        runs = selectors.runs_by_ids(request.user, given["ids"])
        results, created = services.runs_batch(runs, given["action"])
        return Response(out.BatchResult({"results": results, "created": created}).data)


class MaskConfigList(APIView):
    parser_classes = [JSONParser]

    @extend_schema(responses=out.MaskConfigSerializer(many=True), summary="Your saved configurations")
    def get(self, request: Request) -> Response:
        return Response(out.MaskConfigSerializer(selectors.mask_configs_of(request.user), many=True).data)

    @extend_schema(request=inputs.MaskConfigRequest, responses={201: out.MaskConfigSerializer, 400: out.Error},
                   summary='Save {"name": ..., "config": {run options}}; use it with "mask_config": id in a run')
    def post(self, request: Request) -> Response:
        row = services.mask_config_create(owner=request.user, **inputs.parse(inputs.MaskConfigRequest, request.data))
        return Response(out.MaskConfigSerializer(row).data, status=status.HTTP_201_CREATED)


class SweepCreate(APIView):
    parser_classes = [JSONParser]

    @extend_schema(request=inputs.SweepRequest, responses={201: out.RunCreated(many=True), 400: out.Error},
                   summary="One run per (lambda_init, lambda_factor) cell and seed: the options of a run, with "
                           "lambda_init and lambda_factor as lists and seeds a count; optional name (the tag)")
    def post(self, request: Request) -> Response:
        runs = services.run_sweep(owner=request.user, **inputs.parse(inputs.SweepRequest, request.data))
        return Response(out.RunCreated(runs, many=True).data, status=status.HTTP_201_CREATED)


class RunDetail(APIView):
    parser_classes = [JSONParser]

    @extend_schema(responses={200: out.RunSerializer, 404: out.Error})
    def get(self, request: Request, run_id: int) -> Response:
        return Response(out.RunSerializer(selectors.run_get(request.user, run_id)).data)

    @extend_schema(request=inputs.Annotations, responses={200: out.RunSerializer, 400: out.Error, 404: out.Error})
    def patch(self, request: Request, run_id: int) -> Response:
        """Change name, tags (a list of strings), notes (text) and, while the run is queued, its priority."""
        changes = inputs.parse(inputs.Annotations, request.data)
        run = services.run_annotate(selectors.run_get(request.user, run_id), **changes)
        return Response(out.RunSerializer(run).data)

    @extend_schema(responses={204: None, 400: out.Error, 404: out.Error})
    def delete(self, request: Request, run_id: int) -> Response:
        services.run_delete(selectors.run_get(request.user, run_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class RunMetrics(APIView):
    @extend_schema(responses={200: out.MetricRow(many=True), 404: out.Error}, summary="Every epoch so far")
    def get(self, request: Request, run_id: int) -> Response:
        return Response(out.MetricRow(selectors.run_metrics(selectors.run_get(request.user, run_id)), many=True).data)


class RunCancel(APIView):
    @extend_schema(request=None, responses={200: out.RunCreated, 400: out.Error, 404: out.Error})
    def post(self, request: Request, run_id: int) -> Response:
        run = services.run_cancel(selectors.run_get(request.user, run_id))
        return Response(out.RunCreated(run).data)


def not_found(request: HttpRequest) -> HttpResponse:
    """An address under /api/ that names nothing: a JSON error, as every other API error is. One that lacks only
    its final slash is sent on to it, its method and body kept (308; Django's own slash redirect could not tell
    this view from a match)."""
    if not request.path.endswith("/"):
        try:
            if resolve(request.path + "/").func is not not_found:
                query = request.META.get("QUERY_STRING", "")
                return HttpResponsePermanentRedirect(request.path + "/" + (f"?{query}" if query else ""), status=308)
        except Resolver404:
            pass
    return JsonResponse({"error": f"no such API address: {request.path} (the API's description: /api/docs/)"},
                        status=404)


def _epoch_param(request: Request) -> int | None:
    raw = request.query_params.get("epoch")
    if raw in (None, ""):
        return None
    try:
        value = int(raw)
    except ValueError:
        raise ServiceError(f"epoch must be an integer, got {raw!r}") from None
    if value < 1:
        raise ServiceError("epoch must be 1 or more")
    return value


def _attachment(payload: bytes, filename: str, content_type: str) -> HttpResponse:
    response = HttpResponse(payload, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Content-Length"] = str(len(payload))
    return response


class RunDownload(APIView):
    """A run's files (`downloads.NAMES`); the mask of any epoch with `?epoch=N`."""

    @extend_schema(
        parameters=[OpenApiParameter("name", str, OpenApiParameter.PATH,
                                     enum=list(downloads.NAMES)),
                    OpenApiParameter("epoch", int, description="the mask of this epoch (mask.json, .npy, .png)")],
        responses={(200, "application/octet-stream"): OpenApiTypes.BINARY,
                   302: OpenApiResponse(description="with MASKSEL_PRESIGNED_DOWNLOADS on S3: a signed URL of the "
                                                    "stored file (model.pt, model.ts, metrics.csv, ...)"),
                   404: out.Error},
        operation_id="runs_download", summary="A run's files; the mask of any epoch with ?epoch=N")
    def get(self, request: Request, run_id: int, name: str) -> HttpResponse:
        run = selectors.run_get(request.user, run_id)
        found = downloads.run_file(run, name, _epoch_param(request) if name.startswith("mask.") else None)
        if found.stored is not None and found.run_id is not None:
            signed = run_files.presigned_url(found.run_id, found.stored, found.filename, found.content_type)
            if signed is not None:  # from the bucket itself
                return HttpResponseRedirect(signed)
            # streamed from storage, never read whole
            handle = run_files.open_stored(found.run_id, found.stored)
            response = FileResponse(handle, as_attachment=True, filename=found.filename,
                                    content_type=found.content_type)
            response["Content-Length"] = str(handle.size)
            return response
        return _attachment(found.payload or b"", found.filename, found.content_type)


class StudyList(APIView):
    parser_classes = [JSONParser]

    @extend_schema(responses=out.StudySerializer(many=True), summary="Your studies, newest first")
    def get(self, request: Request) -> Response:
        return Response(out.StudySerializer(study_selectors.studies_visible_to(request.user), many=True).data)

    @extend_schema(request=inputs.StudyCreate, responses={201: out.StudyCreated, 400: out.Error},
                   summary="Start a multi-objective study: its first `parallel` trials are queued at once; refused "
                           "with every bad field named")
    def post(self, request: Request) -> Response:
        study = study_services.study_create(owner=request.user, data=request.data)
        return Response(out.StudyCreated(study).data, status=status.HTTP_201_CREATED)


class StudyDetail(APIView):
    @extend_schema(responses={200: out.StudySerializer, 404: out.Error})
    def get(self, request: Request, study_id: int) -> Response:
        return Response(out.StudySerializer(study_selectors.study_get(request.user, study_id)).data)

    @extend_schema(responses={204: None, 400: out.Error, 404: out.Error},
                   summary="Delete a study that ended and its trial records; its runs stay (tagged study-<id>)")
    def delete(self, request: Request, study_id: int) -> Response:
        study_services.study_delete(study_selectors.study_get(request.user, study_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class StudyCancel(APIView):
    @extend_schema(request=None, responses={200: out.StudyCreated, 400: out.Error, 404: out.Error},
                   summary="Stop a running study: no more trials; its queued and running runs are cancelled")
    def post(self, request: Request, study_id: int) -> Response:
        study = study_services.study_cancel(study_selectors.study_get(request.user, study_id))
        return Response(out.StudyCreated(study).data)
