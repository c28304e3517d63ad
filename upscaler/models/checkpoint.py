"""Model weight files: our safetensors format, and safe reading of community ``.pth`` files.

Model files are untrusted. Nothing here executes code from a file: safetensors are parsed as data,
``.pth`` pickles go through ``torch.load(weights_only=True)`` (no fallback), TorchScript archives
are refused, and every header is checked before any tensor is allocated.

Our format is a safetensors file whose metadata holds ``upscaler.arch`` (a key of
``upscaler.models.ARCHITECTURES``), ``upscaler.config`` (JSON of the architecture's config) and
``upscaler.training`` (JSON summary of how it was trained).
"""

from __future__ import annotations

import dataclasses
import json
import math
import pickle
import pickletools
import struct
import zipfile
from pathlib import Path
from typing import Any, BinaryIO

import torch
from torch import nn

from upscaler.atomic import write_bytes_atomic

FORMAT_VERSION = "1"
MAX_HEADER_BYTES = 16 * 1024 * 1024
MAX_PARAMETERS = 400_000_000  # 4x the largest SR generators in use; beyond that it is not a model
MAX_TENSOR_DIM = 1 << 20
SAFETENSORS_SUFFIXES = (".safetensors",)
PICKLE_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin")
_DTYPE_BYTES = {
    "F64": 8,
    "F32": 4,
    "F16": 2,
    "BF16": 2,
    "I64": 8,
    "I32": 4,
    "I16": 2,
    "I8": 1,
    "U8": 1,
    "BOOL": 1,
    "U16": 2,
    "U32": 4,
    "U64": 8,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
}
_FLOAT8 = tuple(
    getattr(torch, name)
    for name in ("float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz")
    if hasattr(torch, name)
)
_WRAPPER_KEYS = ("params_ema", "params", "state_dict", "model", "net_g", "netG", "generator")
CONVERT_HINT = (
    "convert it to .safetensors on a machine you trust, e.g. "
    'python -c "import torch, safetensors.torch as s; '
    "s.save_file(torch.load('in.pth', weights_only=True), 'out.safetensors')\""
)


class ModelFileError(Exception):
    """A model file was refused; the message is one line naming the file and the reason."""

    def __init__(self, path: Path | str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = Path(path)
        self.reason = reason


def _check_parameter_count(path: Path, shapes: list[tuple[int, ...]]) -> None:
    total = 0
    for shape in shapes:
        if any(d < 0 or d > MAX_TENSOR_DIM for d in shape):
            raise ModelFileError(path, f"tensor shape {shape} is not a plausible weight")
        total += math.prod(shape)
    if total > MAX_PARAMETERS:
        raise ModelFileError(
            path, f"{total:,} parameters is beyond any upscaling network (limit {MAX_PARAMETERS:,})"
        )


def read_safetensors_header(path: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """Parse and validate a safetensors header without reading tensor data.

    Returns ``(tensors, metadata)`` where ``tensors`` maps names to their header entries. Rejects
    oversized, truncated or non-JSON headers, bad dtypes, sizes that disagree with shapes,
    overlapping, out-of-range or gapped offsets, and trailing bytes.
    """
    size = path.stat().st_size
    with open(path, "rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            raise ModelFileError(path, "truncated: too short to be a safetensors file")
        (header_len,) = struct.unpack("<Q", prefix)
        if header_len > MAX_HEADER_BYTES:
            raise ModelFileError(path, f"corrupt safetensors: header of {header_len:,} bytes")
        if 8 + header_len > size:
            raise ModelFileError(path, "truncated safetensors: header runs past the end of file")
        raw = handle.read(header_len)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ModelFileError(path, "corrupt safetensors: header is not JSON") from None
    if not isinstance(header, dict):
        raise ModelFileError(path, "corrupt safetensors: header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise ModelFileError(path, "corrupt safetensors: metadata must map strings to strings")
    spans = []
    for name, entry in header.items():
        try:
            dtype, shape, (begin, end) = entry["dtype"], entry["shape"], entry["data_offsets"]
            shape = tuple(int(d) for d in shape)
            begin, end = int(begin), int(end)
        except (KeyError, TypeError, ValueError):
            raise ModelFileError(path, f"corrupt safetensors: bad entry for {name!r}") from None
        if dtype not in _DTYPE_BYTES:
            raise ModelFileError(path, f"unsupported tensor dtype {dtype!r} for {name!r}")
        _check_parameter_count(path, [shape])
        if end - begin != math.prod(shape) * _DTYPE_BYTES[dtype] or begin < 0:
            raise ModelFileError(
                path, f"corrupt safetensors: size of {name!r} disagrees with shape"
            )
        spans.append((begin, end, name))
    _check_parameter_count(path, [tuple(e["shape"]) for e in header.values()])
    position = 0
    for begin, end, name in sorted(spans):
        if begin != position:
            why = "overlaps another" if begin < position else "leaves a gap before it"
            raise ModelFileError(path, f"corrupt safetensors: tensor {name!r} {why}")
        position = end
    data_size = size - 8 - header_len
    if position > data_size:
        raise ModelFileError(path, "truncated safetensors: tensor data runs past the end of file")
    if position < data_size:
        raise ModelFileError(path, f"corrupt safetensors: {data_size - position} trailing bytes")
    return header, metadata


_STORAGE_ITEM_BYTES = {
    "DoubleStorage": 8,
    "FloatStorage": 4,
    "HalfStorage": 2,
    "BFloat16Storage": 2,
    "LongStorage": 8,
    "IntStorage": 4,
    "ShortStorage": 2,
    "CharStorage": 1,
    "ByteStorage": 1,
    "BoolStorage": 1,
    "UntypedStorage": 1,
}
_INT_OPCODES = {"INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4"}
_PUT_OPCODES = {"PUT", "BINPUT", "LONG_BINPUT"}
_GET_OPCODES = {"GET", "BINGET", "LONG_BINGET"}


def _legacy_storage_bytes(handle: BinaryIO) -> int:
    """Bytes of tensor storage a legacy (non-zip) torch file declares.

    torch allocates each declared storage before reading it, so a tiny file could ask for any
    amount. This reads the pickles' opcodes only (nothing is built): after a storage type (a
    ``torch.*Storage`` global, or a memo fetch of one) the next integer is its element count.
    """
    for _ in range(3):  # magic number, protocol version, system info
        for _ in pickletools.genops(handle):
            pass
    memo: dict[int, object] = {}
    strings: list[str] = []
    last: object = None
    pending, total = 0, 0
    for opcode, arg, _ in pickletools.genops(handle):
        name = opcode.name
        value: object = None
        if name == "GLOBAL":
            value = str(arg).split(" ")[-1]
        elif name == "STACK_GLOBAL" and len(strings) >= 2:
            value = strings[-1]
        elif name in _GET_OPCODES and isinstance(arg, int):
            value = memo.get(arg)
        elif name in _INT_OPCODES and isinstance(arg, int) and not isinstance(arg, bool):
            value = arg
        elif name in _PUT_OPCODES and isinstance(arg, int):
            memo[arg] = last
        elif name == "MEMOIZE":
            memo[len(memo)] = last
        if isinstance(arg, str) and "UNICODE" in name:
            strings.append(arg)
        if isinstance(value, str) and value in _STORAGE_ITEM_BYTES:
            pending = _STORAGE_ITEM_BYTES[value]
        elif isinstance(value, int) and pending:
            total, pending = total + value * pending, 0
        last = value
    return total


def _check_legacy(path: Path) -> None:
    size = path.stat().st_size
    try:
        with open(path, "rb") as handle:
            declared = _legacy_storage_bytes(handle)
    except (ValueError, EOFError, struct.error):
        return  # not torch's legacy layout: torch.load refuses it on its own terms
    if declared > size:
        raise ModelFileError(
            path, f"declares {declared:,} bytes of tensors in a {size:,}-byte file; corrupt"
        )


def _is_torchscript(zf: zipfile.ZipFile) -> bool:
    return any(n.endswith("/constants.pkl") or "/code/" in n for n in zf.namelist())


def _read_pickle(path: Path) -> Any:
    with open(path, "rb") as handle:
        magic = handle.read(4)
    if magic.startswith(b"PK"):
        try:
            with zipfile.ZipFile(path) as zf:
                if _is_torchscript(zf):
                    raise ModelFileError(
                        path,
                        f"TorchScript archive: it contains code and is never run; {CONVERT_HINT}",
                    )
                data_bytes = sum(i.file_size for i in zf.infolist() if "/data/" in i.filename)
        except zipfile.BadZipFile:
            raise ModelFileError(
                path, "truncated or corrupt .pth archive; download it again"
            ) from None
        if data_bytes > MAX_PARAMETERS * 4:
            raise ModelFileError(path, f"{data_bytes:,} bytes of tensors is beyond any upscaler")
    else:
        _check_legacy(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=magic.startswith(b"PK"))
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()
        detail = next(
            (ln for ln in first if "GLOBAL" in ln or "global" in ln), first[0] if first else ""
        )
        raise ModelFileError(
            path, f"refused: loading it would run code ({detail.strip()[:160]}); {CONVERT_HINT}"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, struct.error) as exc:
        reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise ModelFileError(path, f"unreadable .pth ({reason}); download it again") from None


def _unwrap(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    for _ in range(4):
        if isinstance(obj, dict) and not all(isinstance(v, torch.Tensor) for v in obj.values()):
            inner = next((obj[k] for k in _WRAPPER_KEYS if isinstance(obj.get(k), dict)), None)
            if inner is None:
                break
            obj = inner
    if not isinstance(obj, dict) or not obj:
        raise ModelFileError(path, "no state dict of tensors found in the file")
    tensors = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise ModelFileError(path, "no tensors found in the file")
    # Strip the prefixes DataParallel/DDP and some trainers add.
    for prefix in ("module.", "netG.", "generator."):
        if all(k.startswith(prefix) for k in tensors):
            tensors = {k[len(prefix) :]: v for k, v in tensors.items()}
    return tensors


def read_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read a state dict and its metadata from ``.safetensors`` or (safely) ``.pth``/``.ckpt``.

    Raises ``ModelFileError`` for anything refused: unsafe pickles, TorchScript, malformed
    headers, implausible sizes, NaN/Inf weights.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(path, "no such model file")
    suffix = path.suffix.lower()
    metadata: dict[str, str] = {}
    if suffix in SAFETENSORS_SUFFIXES:
        header, metadata = read_safetensors_header(path)
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            state_dict = load_file(str(path), device="cpu")
        except (SafetensorError, OSError, RuntimeError) as exc:
            raise ModelFileError(path, f"corrupt safetensors ({exc})") from None
    elif suffix in PICKLE_SUFFIXES:
        state_dict = _unwrap(_read_pickle(path), path)
        _check_parameter_count(path, [tuple(t.shape) for t in state_dict.values()])
    else:
        known = ", ".join(SAFETENSORS_SUFFIXES + PICKLE_SUFFIXES)
        raise ModelFileError(path, f"unknown model file type {suffix!r} (expected {known})")
    for name, tensor in list(state_dict.items()):
        if tensor.dtype in _FLOAT8:  # few ops exist for fp8 (not even isfinite): widen it
            state_dict[name] = tensor = tensor.float()
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ModelFileError(path, f"weight {name!r} contains NaN or Inf values")
    return state_dict, metadata


def save_weights(
    path: str | Path,
    module: nn.Module,
    *,
    arch: str,
    config: Any,
    training: dict[str, Any] | None = None,
    dtype: torch.dtype | None = None,
) -> None:
    """Write ``module``'s weights in our safetensors format, atomically.

    ``dtype`` (e.g. ``torch.float16``) converts floating-point weights for a smaller file.
    """
    from safetensors.torch import save

    is_instance = dataclasses.is_dataclass(config) and not isinstance(config, type)
    config_dict = dataclasses.asdict(config) if is_instance else dict(config)
    tensors = {}
    for name, tensor in module.state_dict().items():
        tensor = tensor.detach().to("cpu").contiguous()
        if dtype is not None and tensor.is_floating_point():
            tensor = tensor.to(dtype)
        tensors[name] = tensor
    metadata = {
        "upscaler.format": FORMAT_VERSION,
        "upscaler.arch": arch,
        "upscaler.config": json.dumps(config_dict, sort_keys=True),
        "upscaler.training": json.dumps(training or {}, sort_keys=True),
    }
    write_bytes_atomic(Path(path), save(tensors, metadata=metadata))
