"""rlkube's route in the vLLM OpenAI server (``--middleware rlkube_vllm.routes.rlkube_routes``).

``POST /rlkube/v1/load_weights {path, version, digest}`` reloads the model's full weights in place from a
policy file the rollout agent wrote (and digest-checked) on the pod's shared volume, through the worker
extension on every rank; ``GET /rlkube/v1/policy`` answers ``{version, digest}``. Same request and errors
as the tiny/hf engines' ``/v1/load_weights`` (docs/contracts.md): ``{reason, message}`` on failure.

Why a route of our own rather than vLLM's ``/collective_rpc``: that endpoint exists only with
VLLM_SERVER_DEV_MODE=1, which also turns on the other development routes, and it calls *any* worker
method named in the request body, outside the API-key guard (vLLM's security notes call it extremely
dangerous). This route calls one method, only with a file under the allowed directories, and its path
sits outside vLLM's own namespace. A middleware (``--middleware``, a stable server flag) needs no fork of
vLLM's api_server, and reaches the engine through ``app.state.engine_client`` as vLLM's own routes do.
"""
from __future__ import annotations

import asyncio
import hashlib
import os
from typing import Any, Awaitable, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

LOAD_PATH = "/rlkube/v1/load_weights"
POLICY_PATH = "/rlkube/v1/policy"
# Where the rollout agent writes policy files (its /tmp and the policies volume are shared with this pod).
ALLOWED_DIRS = [os.path.realpath(d) for d in os.environ.get("RLKUBE_WEIGHTS_DIRS", "/tmp:/var/lib/rlkube/policies").split(":") if d]

_policy: dict[str, Any] = {"version": None, "digest": None}
_lock = asyncio.Lock()


class ApiError(Exception):
    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status, self.reason, self.message = status, reason, message


def _sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(8 << 20):
            digest.update(chunk)
    return f"sha256:{digest.hexdigest()}"


def _checked_request(body: Any) -> tuple[str, int, str]:
    if not isinstance(body, dict):
        raise ApiError(400, "BadRequest", "body must be a JSON object")
    path, version, digest = body.get("path"), body.get("version"), body.get("digest")
    if not isinstance(path, str) or not path:
        raise ApiError(400, "BadRequest", "path must be a non-empty string")
    if not isinstance(version, int) or version < 0:
        raise ApiError(400, "BadRequest", "version must be a non-negative integer")
    if not isinstance(digest, str) or not digest.startswith("sha256:"):
        raise ApiError(400, "BadRequest", "digest must be sha256:<hex>")
    real = os.path.realpath(path)
    if not any(real.startswith(d + os.sep) for d in ALLOWED_DIRS):
        raise ApiError(403, "PathNotAllowed", f"{path} is outside {':'.join(ALLOWED_DIRS)}")
    if not os.path.isfile(real):
        raise ApiError(404, "WeightsNotFound", f"cannot read {path}")
    return real, version, digest


async def _load(request: Request) -> Response:
    path, version, digest = _checked_request(await request.json())
    async with _lock:  # one reload at a time; completions keep running against the old weights until it swaps
        actual = await asyncio.to_thread(_sha256_of, path)
        if actual != digest:
            raise ApiError(409, "DigestMismatch", f"{path} has digest {actual}, not {digest}")
        engine = request.app.state.engine_client
        try:
            await engine.collective_rpc("rlkube_reload_weights", args=(path,))
        except Exception as e:  # the worker's error (a name that does not fit the model, a bad file)
            raise ApiError(422, "IncompatibleWeights", f"{path}: {type(e).__name__}: {e}") from None
        # Cached prefixes hold keys/values computed with the old weights: none may be reused.
        await engine.reset_prefix_cache()
        _policy.update(version=version, digest=digest)
    return JSONResponse(dict(_policy))


async def rlkube_routes(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    """HTTP middleware: answers rlkube's two routes, passes everything else on to vLLM."""
    route = (request.method, request.url.path)
    if route not in {("POST", LOAD_PATH), ("GET", POLICY_PATH)}:
        return await call_next(request)
    try:
        if route == ("GET", POLICY_PATH):
            return JSONResponse(dict(_policy))
        return await _load(request)
    except ApiError as e:
        return JSONResponse({"reason": e.reason, "message": e.message}, status_code=e.status)
    except ValueError:
        return JSONResponse({"reason": "BadRequest", "message": "body is not JSON"}, status_code=400)
