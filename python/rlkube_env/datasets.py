"""Dataset rows for the dataset-driven environments, from wherever environment.dataset says:
a local JSONL or Parquet file, an http(s) URL to either (downloaded once into the cache directory), or a
Hugging Face hub dataset `hf:<owner>/<name>[:<config>[:<split>]]` (its Parquet files, found through the hub's
parquet API; a token from HF_TOKEN or RLKUBE_HF_TOKEN). Each row needs question/answer or problem/solution strings."""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Dict, List, Optional

from .environment import EnvironmentUnusable

FIELD = "environment.dataset"
HF_PREFIX = "hf:"
DEFAULT_HF_ENDPOINT = "https://huggingface.co"


@dataclass
class Row:
    question: str
    answer: str


def load_rows(dataset: Optional[str], cache_dir: str, environment: str) -> List[Row]:
    if not dataset:
        raise EnvironmentUnusable("InvalidEnvironmentArgs", FIELD, f"environment {environment} needs a dataset "
                                  "(JSONL or Parquet: a path, an http(s) URL or hf:<owner>/<name>)")
    if dataset.startswith(HF_PREFIX):
        resolved = resolve_hf(dataset, dict(os.environ))
        paths = [download(url, cache_dir, resolved.headers_for(url)) for url in parquet_urls(resolved)]
    elif dataset.startswith(("http://", "https://")):
        paths = [download(dataset, cache_dir, {})]
    elif "://" in dataset:
        raise EnvironmentUnusable("DatasetUnreadable", FIELD, f"{dataset}: only local paths, http(s) URLs and hf:<owner>/<name> are read")
    else:
        paths = [dataset]
    rows = [row for path in paths for row in read_rows(path, dataset)]
    if not rows:
        raise EnvironmentUnusable("DatasetUnreadable", FIELD, f"{dataset} has no rows")
    return rows


def read_rows(path: str, name: str) -> List[Row]:
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as e:
        raise EnvironmentUnusable("DatasetUnreadable", FIELD, f"{name}: {e.strerror or e}") from None
    records = read_parquet(path, name) if head == b"PAR1" else read_jsonl(path, name)
    return [row_of(record, i, name) for i, record in enumerate(records)]


def read_jsonl(path: str, name: str) -> List[dict]:
    records = []
    with open(path, "rb") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except (ValueError, UnicodeDecodeError):
                raise EnvironmentUnusable("DatasetUnreadable", FIELD,
                                          f"{name}: line {number} is not JSON (a dataset is JSONL or Parquet)") from None
            if not isinstance(record, dict):
                raise EnvironmentUnusable("DatasetUnreadable", FIELD, f"{name}: line {number} is not a JSON object")
            records.append(record)
    return records


def read_parquet(path: str, name: str) -> List[dict]:
    import pyarrow.parquet as pq
    try:
        return pq.read_table(path).to_pylist()
    except Exception as e:  # noqa: BLE001 - pyarrow raises many kinds for a broken file
        raise EnvironmentUnusable("DatasetUnreadable", FIELD, f"{name}: not a readable Parquet file ({e})") from None


def row_of(record: dict, index: int, name: str) -> Row:
    question = record.get("question", record.get("problem"))
    answer = record.get("answer", record.get("solution"))
    if not isinstance(question, str) or not isinstance(answer, str):
        raise EnvironmentUnusable("DatasetUnreadable", FIELD,
                                  f"{name}: row {index + 1} needs string question/answer (or problem/solution) fields")
    return Row(question, answer)


def download(url: str, cache_dir: str, headers: Dict[str, str]) -> str:
    """The file at url, fetched once into cache_dir (named by the URL's hash) and reused after."""
    base = os.path.basename(urllib.parse.urlparse(url).path) or "data"
    path = os.path.join(cache_dir, f"{hashlib.sha256(url.encode()).hexdigest()[:16]}-{base}")
    if os.path.exists(path):
        return path
    os.makedirs(cache_dir, exist_ok=True)
    # Written beside its final name and renamed, so two processes (or a killed one) never leave half a file there.
    fd, partial = tempfile.mkstemp(dir=cache_dir, prefix=".partial-")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=120) as response:
            while chunk := response.read(1 << 20):
                out.write(chunk)
        os.replace(partial, path)
    except (OSError, urllib.error.URLError) as e:
        raise EnvironmentUnusable("DatasetUnreadable", FIELD, f"{url}: download failed ({getattr(e, 'reason', None) or e})") from None
    finally:
        if os.path.exists(partial):
            os.remove(partial)
    return path


@dataclass
class HubDataset:
    repo: str
    config: str
    split: str
    endpoint: str
    token: Optional[str]

    @property
    def api_url(self) -> str:
        quote = urllib.parse.quote
        return f"{self.endpoint}/api/datasets/{self.repo}/parquet/{quote(self.config)}/{quote(self.split)}"

    def headers_for(self, url: str) -> Dict[str, str]:
        """The token goes to the hub only, never to another host a listing might name."""
        same_host = urllib.parse.urlparse(url).netloc == urllib.parse.urlparse(self.endpoint).netloc
        return {"Authorization": f"Bearer {self.token}"} if self.token and same_host else {}


def resolve_hf(dataset: str, env: Dict[str, str]) -> HubDataset:
    """hf:<owner>/<name>[:<config>[:<split>]] (config `default`, split `train` unless named); HF_ENDPOINT and
    HF_TOKEN as the hub's own tools read them."""
    parts = dataset[len(HF_PREFIX):].split(":")
    repo = parts[0]
    if len(parts) > 3 or not repo or repo.count("/") != 1 or any(not p for p in repo.split("/")) or any(p == "" for p in parts[1:]):
        raise EnvironmentUnusable("DatasetUnreadable", FIELD, f"{dataset}: a hub dataset is hf:<owner>/<name>[:<config>[:<split>]]")
    config = parts[1] if len(parts) > 1 else "default"
    split = parts[2] if len(parts) > 2 else "train"
    endpoint = (env.get("HF_ENDPOINT") or DEFAULT_HF_ENDPOINT).rstrip("/")
    # RLKUBE_HF_TOKEN: what the operator sets from spec.environment.tokenSecret.
    return HubDataset(repo, config, split, endpoint, env.get("RLKUBE_HF_TOKEN") or env.get("HF_TOKEN") or None)


def parquet_urls(hub: HubDataset) -> List[str]:
    try:
        with urllib.request.urlopen(urllib.request.Request(hub.api_url, headers=hub.headers_for(hub.api_url)), timeout=60) as response:
            urls = json.loads(response.read())
    except (OSError, urllib.error.URLError, ValueError) as e:
        raise EnvironmentUnusable("DatasetUnreadable", FIELD,
                                  f"hf:{hub.repo}: listing its parquet files failed ({getattr(e, 'reason', None) or e})") from None
    if not isinstance(urls, list) or not urls or not all(isinstance(u, str) for u in urls):
        raise EnvironmentUnusable("DatasetUnreadable", FIELD,
                                  f"hf:{hub.repo}: config {hub.config!r} split {hub.split!r} has no parquet files")
    return urls
