"""A ``POST /locate`` request (JSON or multipart form) parsed into a :class:`Query`.

Pydantic only parses shapes and types here; every value rule (text length, k, coordinates,
finiteness, image size and decoding) belongs to :meth:`Query.check`, :class:`Prior` and the
Locator, whose one-line :class:`PlanetlocError` becomes a 422. Error replies never repeat the
input and are cut to :data:`MAX_DETAIL` characters.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError, WithJsonSchema
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request

from planetloc.index.locate import MAX_IMAGE_BYTES, Query
from planetloc.index.priors import Prior

MAX_JSON_BYTES = 64 * 1024
MAX_UPLOAD_BYTES = MAX_IMAGE_BYTES + 64 * 1024  # the image and the form's other fields
MAX_DETAIL = 300
MAX_FORM_FIELDS = 32  # regions may repeat; 256 of them fit in a JSON body instead


class RequestError(Exception):
    """A request refused before it reaches the model: an HTTP status and one line."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = short(detail)


def short(message: str) -> str:
    """One line of at most :data:`MAX_DETAIL` characters."""
    line = " ".join(str(message).split())
    return line if len(line) <= MAX_DETAIL else line[: MAX_DETAIL - 3] + "..."


def describe_errors(errors: list[Any]) -> str:
    """The first problem of a pydantic/FastAPI error list, named by its field, without input."""
    if not errors:
        return "invalid request"
    first = errors[0]
    where = ".".join(str(p)[:40] for p in first.get("loc", ()) if p not in ("body", "query"))
    text = f"{where}: {first.get('msg', 'invalid')}" if where else str(first.get("msg", "invalid"))
    if len(errors) > 1:
        text += f" (and {len(errors) - 1} more problem{'s' * (len(errors) > 2)})"
    return short(text)


class NearPoint(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    lat: float
    lon: float


class LocateJson(BaseModel):
    """The JSON body of ``POST /locate``: a description and an optional prior."""

    model_config = ConfigDict(extra="forbid", strict=True)

    text: str | None = None
    k: int | None = None
    near: NearPoint | None = None
    radius_km: float | None = None
    nearest: int | None = None
    regions: list[str] = []
    bbox: list[float] | None = None


def _split_commas(value: Any) -> Any:
    return [p.strip() for p in value.split(",")] if isinstance(value, str) else value


CommaNumbers = Annotated[
    list[float], BeforeValidator(_split_commas), WithJsonSchema({"type": "string"})
]


class LocateForm(BaseModel):
    """The multipart form of ``POST /locate`` (besides the ``image`` file)."""

    model_config = ConfigDict(extra="forbid")

    text: str | None = None
    heading: float | None = None
    k: int | None = None
    near: CommaNumbers | None = None  # "lat,lon"
    radius_km: float | None = None
    nearest: int | None = None
    regions: list[str] = []
    bbox: CommaNumbers | None = None  # "west,south,east,north"


def make_prior(fields: LocateJson | LocateForm) -> Prior | None:
    """The request's prior (validated by :class:`Prior` itself), or None when it sets none."""
    near = fields.near
    if isinstance(near, NearPoint):
        near = [near.lat, near.lon]
    unset = (near, fields.radius_km, fields.nearest, fields.bbox)
    if all(v is None for v in unset) and not fields.regions:
        return None
    return Prior(
        bbox=tuple(fields.bbox) if fields.bbox is not None else None,  # type: ignore[arg-type]
        near=tuple(near) if near is not None else None,  # type: ignore[arg-type]
        radius_km=fields.radius_km,
        nearest=fields.nearest,
        regions=tuple(fields.regions),
    )


def _query(fields: LocateJson | LocateForm, image: bytes | None, heading: float | None) -> Query:
    query = Query(text=fields.text, image=image, heading_deg=heading, prior=make_prior(fields))
    if fields.k is not None:
        query.k = fields.k
    return query


async def read_query(request: Request, *, max_chars: int) -> Query:
    """Parse and check the request; :class:`RequestError` or ``PlanetlocError`` when bad."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "application/json":
        try:
            fields = LocateJson.model_validate_json(await request.body())
        except ValidationError as err:
            raise RequestError(422, describe_errors(err.errors(include_input=False))) from None
        query = _query(fields, None, None)
    elif kind in ("multipart/form-data", "application/x-www-form-urlencoded"):
        query = await _read_form(request)
    else:
        raise RequestError(
            415, "send the query as application/json or multipart/form-data (with an image)"
        )
    query.check(max_chars=max_chars)
    return query


async def _read_form(request: Request) -> Query:
    try:
        form = await request.form(
            max_files=1, max_fields=MAX_FORM_FIELDS, max_part_size=MAX_JSON_BYTES
        )
    except HTTPException as err:
        raise RequestError(400, f"malformed multipart body: {err.detail}") from None
    try:
        values: dict[str, Any] = {}
        image: bytes | None = None
        for name, value in form.multi_items():
            if name == "image":
                if not isinstance(value, UploadFile):
                    raise RequestError(422, "image: send the image as a file upload")
                kind = (value.content_type or "").split(";")[0].strip().lower()
                if not kind.startswith("image/"):
                    raise RequestError(
                        415,
                        f"image: the upload is {kind[:60] or 'untyped'!r}; send an image "
                        "(image/jpeg, image/png, ...)",
                    )
                image = await value.read(MAX_IMAGE_BYTES + 1)
                if len(image) > MAX_IMAGE_BYTES:
                    raise RequestError(
                        413, f"image: larger than the {MAX_IMAGE_BYTES // 2**20} MiB limit"
                    )
            elif isinstance(value, UploadFile):
                raise RequestError(422, f"{name[:40]}: only the image may be a file")
            elif name == "regions":
                values.setdefault("regions", []).append(value)
            elif name in values:
                raise RequestError(422, f"{name[:40]}: given more than once")
            elif value != "" or name == "text":  # an empty optional form field means unset
                values[name] = value
    finally:
        await form.close()
    try:
        fields = LocateForm.model_validate(values)
    except ValidationError as err:
        raise RequestError(422, describe_errors(err.errors(include_input=False))) from None
    return _query(fields, image, fields.heading)


def openapi_body() -> tuple[dict[str, Any], dict[str, Any]]:
    """The OpenAPI ``requestBody`` of ``POST /locate`` and the component schemas it refers to."""
    ref = "#/components/schemas/{model}"
    as_json = LocateJson.model_json_schema(ref_template=ref)
    form = LocateForm.model_json_schema(ref_template=ref)
    form["properties"]["image"] = {
        "type": "string",
        "format": "binary",
        "description": "a street-level photo (models that accept images)",
    }
    components = {**as_json.pop("$defs", {}), **form.pop("$defs", {})}
    body = {
        "required": True,
        "content": {
            "application/json": {"schema": as_json},
            "multipart/form-data": {"schema": form},
        },
    }
    return body, components
