"""What every route of the HTTP API shares: RFC 9457 problem answers, API keys, the response
wrapper and its pagination links.

Problems: every failure, FastAPI's own validation errors and unknown routes included, answers
application/problem+json with a stable `code`, field errors, a suggestion and a documentation
link; the `type` URI is served (GET /problems/{slug}) so it says what went wrong and what to do.
A bug answers 500 with no traceback (the log has it).
"""

import hashlib
import hmac
import ipaddress
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, TypeVar

from fastapi import Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.datastructures import URL

from config.errors import HubError
from config.settings import ServeSettings
from connectors import store_api
from schemas.api import (PROBLEM_MEDIA_TYPE, ExecutionMetrics, FieldError, Links, Pagination, Problem, QueryStatus,
                         Response)

log = logging.getLogger("hub.serve")


@dataclass(frozen=True)
class ProblemType:
    slug: str
    title: str
    status: int
    code: str
    suggestion: str


PROBLEMS = {p.slug: p for p in (
    ProblemType("validation-error", "Invalid request parameters", 422, "VALIDATION_ERROR",
                "Fix the fields listed in `errors`; the OpenAPI description (/docs) gives each one's rules."),
    ProblemType("unauthorized", "API key missing or not accepted", 401, "UNAUTHORIZED",
                "Send a key from HUB_SERVE__API_KEYS as `Authorization: Bearer KEY` or `X-API-Key: KEY`."),
    ProblemType("not-found", "Not found", 404, "NOT_FOUND",
                "Check the path and id; lists of what exists are under /api/v1."),
    ProblemType("method-not-allowed", "Method not allowed", 405, "METHOD_NOT_ALLOWED",
                "The API is read-only except for the ingest endpoints; see /docs for each path's methods."),
    ProblemType("query-timeout", "The store query took too long", 504, "QUERY_TIMEOUT",
                "Narrow the time range or the filters, use a coarser window, or raise [serve] query_timeout_s."),
    ProblemType("too-many-requests", "Too many queries at once", 429, "TOO_MANY_REQUESTS",
                "Retry after the number of seconds in Retry-After; [serve] max_concurrent_queries sets the limit."),
    ProblemType("store-unavailable", "The store is not available", 503, "STORE_UNAVAILABLE",
                "Retry later; check that the store (or the `hub run` serving it live) is running."),
    ProblemType("bad-request", "Bad request", 400, "BAD_REQUEST", "See `detail` for what to change."),
    ProblemType("payload-too-large", "Request body too large", 413, "PAYLOAD_TOO_LARGE",
                "Send smaller batches; [serve] max_body_bytes sets the limit."),
    ProblemType("unsupported-media-type", "Unsupported media type", 415, "UNSUPPORTED_MEDIA_TYPE",
                "Send application/json or application/x-protobuf, optionally gzip-encoded."),
    ProblemType("internal-error", "Internal error", 500, "INTERNAL_ERROR",
                "This is a bug in the hub; the server log has the details."),
)}
BY_STATUS = {p.status: p for p in PROBLEMS.values()}


class ApiProblem(Exception):
    """Raised by routes: answered as the problem of that slug."""

    def __init__(self, slug: str, detail: str, errors: list[FieldError] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.slug, self.detail, self.errors, self.headers = slug, detail, errors or [], headers or {}


def problem_response(request: Request, slug: str, detail: str, errors: list[FieldError] | None = None,
                     headers: dict[str, str] | None = None) -> JSONResponse:
    kind = PROBLEMS[slug]
    base = str(request.base_url).rstrip("/")
    body = Problem(type=f"{base}/problems/{kind.slug}", title=kind.title, status=kind.status, detail=detail,
                   instance=request.url.path, code=kind.code, errors=errors or [], suggestion=kind.suggestion,
                   documentation_url=f"{base}/docs")
    return JSONResponse(body.model_dump(), status_code=kind.status, media_type=PROBLEM_MEDIA_TYPE, headers=headers)


def field_error(field: str, message: str, code: str) -> FieldError:
    return FieldError(field=field, message=message, code=code)


def install_problem_handlers(app: Any) -> None:
    @app.exception_handler(ApiProblem)
    async def _api_problem(request: Request, exc: ApiProblem) -> JSONResponse:
        return problem_response(request, exc.slug, exc.detail, exc.errors, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [field_error(".".join(str(p) for p in e.get("loc", ())), e.get("msg", "invalid"),
                              e.get("type", "invalid")) for e in exc.errors()]
        fields = ", ".join(e.field for e in errors)
        return problem_response(request, "validation-error", f"{len(errors)} invalid field(s): {fields}", errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = BY_STATUS.get(exc.status_code, PROBLEMS["bad-request"])
        detail = exc.detail if isinstance(exc.detail, str) else kind.title
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no such path: {request.url.path}"
        return problem_response(request, kind.slug, detail, headers=getattr(exc, "headers", None))

    @app.exception_handler(HubError)
    async def _hub(request: Request, exc: HubError) -> JSONResponse:
        slug, headers = {
            store_api.QueryTimeout: ("query-timeout", None),
            store_api.Busy: ("too-many-requests", {"Retry-After": "1"}),
            store_api.StoreUnavailable: ("store-unavailable", {"Retry-After": "5"}),
            store_api.NotFound: ("not-found", None),
        }.get(type(exc), ("bad-request", None))
        return problem_response(request, slug, str(exc), headers=headers)

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error on %s %s", request.method, request.url.path)
        return problem_response(request, "internal-error", f"{type(exc).__name__} while answering {request.url.path}")


# -- API keys -----------------------------------------------------------------------------------------

LOOPBACK_NAMES = {"localhost"}


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def key_digests(spec: str) -> list[bytes]:
    """HUB_SERVE__API_KEYS: comma-separated keys, or `sha256:<hex>` of a key (so the environment
    need not hold the key itself); kept only as SHA-256 digests."""
    out = []
    for item in (s.strip() for s in spec.split(",")):
        if not item:
            continue
        if item.startswith("sha256:"):
            try:
                digest = bytes.fromhex(item[len("sha256:"):])
            except ValueError:
                raise HubError("HUB_SERVE__API_KEYS: a sha256: entry is not hex") from None
            if len(digest) != 32:
                raise HubError("HUB_SERVE__API_KEYS: a sha256: entry is not 64 hex digits")
            out.append(digest)
        else:
            out.append(hashlib.sha256(item.encode()).digest())
    return out


class ApiKeys:
    """Checks a request's key against the configured digests in constant time."""

    def __init__(self, digests: list[bytes]) -> None:
        self.digests = digests

    def __call__(self, request: Request) -> None:
        if not self.digests:
            return
        presented = request.headers.get("x-api-key")
        auth = request.headers.get("authorization", "")
        if presented is None and auth[:7].lower() == "bearer ":
            presented = auth[7:].strip()
        if not presented:
            raise ApiProblem("unauthorized", "this API needs a key", headers={"WWW-Authenticate": 'Bearer realm="hub"'})
        digest = hashlib.sha256(presented.encode()).digest()
        ok = False
        for known in self.digests:  # every one compared: timing does not tell which matched
            ok |= hmac.compare_digest(digest, known)
        if not ok:
            raise ApiProblem("unauthorized", "the API key is not accepted", headers={"WWW-Authenticate": 'Bearer realm="hub"'})


# -- the wrapper and its links ---------------------------------------------------------------------

CURSOR_PARAMS = ("after", "before", "last")


def links(url: URL, page: int, total_pages: int, page_data: store_api.Page) -> Links:
    """first/prev/next/last/self; prev and next carry keyset cursors of this page's edges."""
    bare = url.remove_query_params(list(CURSOR_PARAMS))
    prev = nxt = None
    if page > 1 and page_data.first_key is not None:
        prev = str(bare.include_query_params(page=page - 1, before=store_api.encode_cursor(page_data.first_key)))
    if page < total_pages and page_data.last_key is not None:
        nxt = str(bare.include_query_params(page=page + 1, after=store_api.encode_cursor(page_data.last_key)))
    return Links(**{"self": str(url), "first": str(bare.include_query_params(page=1)), "prev": prev, "next": nxt,
                    "last": str(bare.include_query_params(page=max(total_pages, 1), last="true"))})


def pagination(url: URL, page: int, per_page: int, page_data: store_api.Page) -> Pagination:
    total_pages = -(-page_data.total // per_page)
    return Pagination(page=page, per_page=per_page, total_items=page_data.total, total_pages=total_pages,
                      links=links(url, page, total_pages, page_data))


def metrics_of(stats: store_api.Stats, rows: int) -> ExecutionMetrics:
    return ExecutionMetrics(execution_time_ms=stats.elapsed_ms, rows_read=stats.rows_read, bytes_read=stats.bytes_read,
                            rows_returned=rows, queries=stats.queries)


def position(page: int, per_page: int, after: str | None, before: str | None, last: bool,
             keys: list[store_api.Key]) -> store_api.Position:
    """Where to read from the paging parameters; a bad combination is a field error."""
    given = [name for name, value in (("after", after), ("before", before), ("last", last)) if value]
    if len(given) > 1:
        raise ApiProblem("validation-error", "give at most one of after, before, last",
                         [field_error(f"query.{n}", "only one of after, before, last", "conflict") for n in given])
    try:
        if after:
            return store_api.Position(after=store_api.decode_cursor(after, keys))
        if before:
            return store_api.Position(before=store_api.decode_cursor(before, keys))
    except store_api.BadCursor as exc:
        name = "after" if after else "before"
        raise ApiProblem("validation-error", f"{name}: {exc}",
                         [field_error(f"query.{name}", f"{exc}; follow the links of a previous answer", "invalid_cursor")]) \
            from None
    if last:
        return store_api.Position(last=True)
    return store_api.Position(offset=(page - 1) * per_page)



# -- what every listing route shares: filters, the paging parameters, the paged answer ---------------

M = TypeVar("M")
NAME_PATTERN = r"^[A-Za-z0-9_.:\-]{1,200}$"
Name = Annotated[str | None, Query(pattern=NAME_PATTERN)]


def time_param(alias: str, description: str) -> Any:
    """A `from`/`to` query parameter whose description says which time of the rows it bounds."""
    return Annotated[datetime | None, Query(alias=alias, description=f"{description} (ISO 8601)")]


Since = time_param("from", "start of the time range, inclusive")
Until = time_param("to", "end of the time range, exclusive")
PAGING_DOCS = {"after": "keyset cursor: the page after this position (from a `next` link)",
               "before": "keyset cursor: the page before this position (from a `prev` link)",
               "last": "the last page (from the `last` link)",
               "page": "page number; without a cursor it is read by offset (a jump), with one it only labels "
                       "the page"}


def time_filters(column: str, since: datetime | None, until: datetime | None, where: list[str],
                 params: dict[str, Any]) -> None:
    """`from`/`to` on one time column; an empty range is a field error, not an empty answer."""
    if since is not None and until is not None and since >= until:
        raise ApiProblem("validation-error", "from must be before to",
                         [field_error("query.from", "must be before `to`", "range")])
    if since is not None:
        where.append(f"{column} >= fromUnixTimestamp64Milli({{since_ms:Int64}}, 'UTC')")
        params["since_ms"] = store_api.utc_ms(since)
    if until is not None:
        where.append(f"{column} < fromUnixTimestamp64Milli({{until_ms:Int64}}, 'UTC')")
        params["until_ms"] = store_api.utc_ms(until)


def equals(column: str, value: str | int | bool | None, kind: str, where: list[str], params: dict[str, Any]) -> None:
    """`column = value` bound as a parameter, when the filter was given."""
    if value is not None:
        where.append(f"{column} = {{{column}:{kind}}}")
        params[column] = value


def string_filters(**columns: str | None) -> tuple[list[str], dict[str, Any]]:
    """A listing's WHERE terms and parameters, starting with `column = value` for each string
    filter given (keyword = column name)."""
    where: list[str] = []
    params: dict[str, Any] = {}
    for column, value in columns.items():
        equals(column, value, "String", where, params)
    return where, params


def contains(column: str, name: str, value: str | None, where: list[str], params: dict[str, Any]) -> None:
    """Array `column` holds `value` (bound as `name`), when the filter was given."""
    if value is not None:
        where.append(f"has({column}, {{{name}:String}})")
        params[name] = value


def find_one(reader: store_api.StoreReader, sql: str, key: str, what: str
             ) -> tuple[dict[str, Any], store_api.Stats, str]:
    """The one row `sql` finds for id `key` (with the query's stats and id), or a 404 problem."""
    stats, qid = store_api.Stats(), store_api.new_query_id()
    found = reader.one(sql, {"id": key}, stats, qid)
    if not found:
        raise store_api.NotFound(f"no {what} {key!r}")
    return found[0], stats, qid


@dataclass(frozen=True)
class Paging:
    """A request's paging parameters: page number, size and at most one cursor."""

    page: int
    per_page: int
    after: str | None
    before: str | None
    last: bool


def paging_params(serve: ServeSettings) -> Callable[..., Paging]:
    """The paging query parameters as one FastAPI dependency, so every listing takes (and
    documents) the same ones, with the configured page sizes."""
    Page = Annotated[int, Query(ge=1, description=PAGING_DOCS["page"])]
    PerPage = Annotated[int, Query(ge=1, le=serve.max_page_size,
                                   description=f"items per page (max {serve.max_page_size})")]
    After = Annotated[str | None, Query(max_length=2000, description=PAGING_DOCS["after"])]
    Before = Annotated[str | None, Query(max_length=2000, description=PAGING_DOCS["before"])]
    Last = Annotated[bool, Query(description=PAGING_DOCS["last"])]

    def paging(page: Page = 1, per_page: PerPage = serve.default_page_size, after: After = None,
               before: Before = None, last: Last = False) -> Paging:
        return Paging(page, per_page, after, before, last)

    return paging


@dataclass
class Listed:
    """One page read from the store, with what it cost and its page metadata and links."""

    data: store_api.Page
    stats: store_api.Stats
    query_id: str
    pagination: Pagination


def read_listing(reader: store_api.StoreReader, request: Request, lst: store_api.Listing, where: list[str],
                 params: dict[str, Any], paging: Paging) -> Listed:
    """The page the paging parameters ask for (keyset when a cursor is given, offset for a jump)."""
    pos = position(paging.page, paging.per_page, paging.after, paging.before, paging.last, lst.keys)
    stats, qid = store_api.Stats(), store_api.new_query_id()
    data = reader.page(lst, where, params, paging.per_page, pos, stats, qid)
    page = max(-(-data.total // paging.per_page), 1) if paging.last else paging.page
    return Listed(data, stats, qid, pagination(request.url, page, paging.per_page, data))


def list_answer(model: type[M], listed: Listed, status: QueryStatus = QueryStatus.success) -> Response[list[M]]:
    """The one wrapper around a page of rows, each row as `model`."""
    rows = [model(**row) for row in listed.data.rows]
    return Response[list[model]](status=status, query_id=listed.query_id, data=rows,  # type: ignore[valid-type]
                                 pagination=listed.pagination, metrics=metrics_of(listed.stats, len(rows)))
