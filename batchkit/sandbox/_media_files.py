"""Media files synthesised in pure Python for the sandbox's media host: MP4/MOV/M4A, WAV, MP3 and pages.

Each file is a :class:`VirtualFile`: a few byte strings (headers, the MP4 index) around filler regions that
are generated on demand, so a 5 GB clip costs a few kilobytes of memory and any byte range is cheap.

The MP4 family is a real ISO base media file: ``ftyp``, ``moov`` (``mvhd``, and per track ``tkhd``, ``mdia``
with ``mdhd``, ``hdlr``, ``minf`` and an ``stbl`` whose ``stsd`` holds an ``avc1`` or ``mp4a`` sample entry)
and ``mdat``, with the index before the samples ("faststart") or after them. Video samples are genuine
H.264: every frame is a tiny flat-grey IDR picture (one 8-bit intra macroblock code per macroblock) padded
with filler NAL units, so decoders and demuxers (PyAV/ffmpeg, tinytag) read duration, tracks, codecs, size
and frame rate exactly as from an encoder's file. Audio samples are silent. WAV is PCM silence; MP3 is
MPEG-1 Layer III at 48 kHz, 128 kbit/s (384-byte frames), led by an ``Info`` frame that states the frame
count so the duration is exact.
"""

from __future__ import annotations

import bisect
import functools
import math
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

__all__ = [
    "ClipSpec",
    "Filler",
    "VirtualFile",
    "html_page",
    "json_page",
    "mp3_file",
    "mp4_file",
    "text_page",
    "wav_file",
]

_CHUNK: Final = 1 << 16
_FLAT_UNIT: Final = 4 << 20


# --------------------------------------------------------------------------------------------- files


@dataclass(frozen=True, slots=True)
class Filler:
    """``length`` bytes of a repeating unit: each ``(piece, count)`` of ``unit`` is ``piece`` ``count`` times.

    ``Filler(10)`` is ten zero bytes; ``Filler(3 * 70, ((frame, 2), (sound, 1)))`` three times two video
    samples and one audio sample. Only the pieces are held in memory, however long the filler is.
    """

    length: int
    unit: tuple[tuple[bytes, int], ...] = ((b"\x00", 1),)
    _ends: tuple[int, ...] = field(init=False, repr=False, compare=False)
    _flat: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        ends, total = [], 0
        for piece, count in self.unit:
            total += len(piece) * count
            ends.append(total)
        object.__setattr__(self, "_ends", tuple(ends))
        # A unit up to a few MB is kept built out, so that reads are slices rather than Python loops.
        flat = b"".join(piece * count for piece, count in self.unit) if 1 < total <= _FLAT_UNIT else b""
        object.__setattr__(self, "_flat", flat)

    def read(self, start: int, stop: int) -> bytes:
        if len(self.unit) == 1 and len(self.unit[0][0]) == 1:
            return self.unit[0][0] * (stop - start)
        unit_len = self._ends[-1]
        if self._flat:
            offset, n = start % unit_len, stop - start
            if offset + n <= unit_len:
                return self._flat[offset : offset + n]
            whole, rest = divmod(offset + n, unit_len)
            return (self._flat[offset:] + self._flat * (whole - 1) + self._flat[:rest])[:n]
        out, pos = bytearray(), start
        while pos < stop:
            offset = pos % unit_len
            k = bisect.bisect_right(self._ends, offset)
            piece = self.unit[k][0]
            begin = self._ends[k] - len(piece) * self.unit[k][1]
            inner = (offset - begin) % len(piece)
            take = min(len(piece) - inner, stop - pos)
            out += piece[inner : inner + take]
            pos += take
        return bytes(out)


Part = bytes | Filler


@dataclass(frozen=True, slots=True)
class VirtualFile:
    """A file made of byte strings and :class:`Filler` regions, read by range without being built."""

    parts: tuple[Part, ...]
    content_type: str
    starts: tuple[int, ...] = field(init=False)
    size: int = field(init=False)

    def __post_init__(self) -> None:
        starts, total = [], 0
        for part in self.parts:
            starts.append(total)
            total += len(part) if isinstance(part, bytes) else part.length
        object.__setattr__(self, "starts", tuple(starts))
        object.__setattr__(self, "size", total)

    def read(self, start: int = 0, stop: int | None = None) -> bytes:
        """Bytes ``[start, stop)`` (clipped to the file)."""
        return b"".join(self.iter(start, stop))

    def iter(self, start: int = 0, stop: int | None = None, chunk: int = _CHUNK) -> Iterator[bytes]:
        """Bytes ``[start, stop)`` in pieces of at most ``chunk`` bytes."""
        stop = self.size if stop is None else min(stop, self.size)
        start = max(0, start)
        for part, begin in zip(self.parts, self.starts, strict=True):
            length = len(part) if isinstance(part, bytes) else part.length
            end = begin + length
            if end <= start or begin >= stop:
                continue
            lo, hi = max(start, begin) - begin, min(stop, end) - begin
            for at in range(lo, hi, chunk):
                upto = min(at + chunk, hi)
                yield part[at:upto] if isinstance(part, bytes) else part.read(at, upto)

    def truncated(self, length: int) -> VirtualFile:
        """The first ``length`` bytes only (a file cut short)."""
        parts: list[Part] = []
        for part, begin in zip(self.parts, self.starts, strict=True):
            if begin >= length:
                break
            keep = length - begin
            if isinstance(part, bytes):
                parts.append(part[:keep])
            else:
                parts.append(Filler(min(part.length, keep), part.unit))
        return VirtualFile(tuple(parts), self.content_type)


# --------------------------------------------------------------------------------------------- boxes


def _box(kind: bytes, *payload: bytes) -> bytes:
    body = b"".join(payload)
    return struct.pack(">I", 8 + len(body)) + kind + body


def _full(kind: bytes, version: int, flags: int, *payload: bytes) -> bytes:
    return _box(kind, bytes([version]) + flags.to_bytes(3, "big"), *payload)


_MATRIX: Final = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)
_LANGUAGE_UND: Final = 0x55C4  # ISO 639-2 "und", packed 5 bits per letter


def _mvhd(timescale: int, duration: int, next_track: int) -> bytes:
    if duration < 2**32:
        head = struct.pack(">IIII", 0, 0, timescale, duration)
        version = 0
    else:
        head = struct.pack(">QQIQ", 0, 0, timescale, duration)
        version = 1
    tail = struct.pack(">IH10x", 0x10000, 0x100) + _MATRIX + bytes(24) + struct.pack(">I", next_track)
    return _full(b"mvhd", version, 0, head, tail)


def _tkhd(track_id: int, duration: int, *, audio: bool, width: int, height: int) -> bytes:
    if duration < 2**32:
        head, version = struct.pack(">IIII4xI", 0, 0, track_id, 0, duration), 0
    else:
        head, version = struct.pack(">QQI4xQ", 0, 0, track_id, duration), 1
    middle = struct.pack(">8xhhH2x", 0, 0, 0x100 if audio else 0)
    size = struct.pack(">II", width << 16, height << 16)
    return _full(b"tkhd", version, 3, head, middle, _MATRIX, size)


def _mdhd(timescale: int, duration: int) -> bytes:
    if duration < 2**32:
        return _full(b"mdhd", 0, 0, struct.pack(">IIIIHH", 0, 0, timescale, duration, _LANGUAGE_UND, 0))
    return _full(b"mdhd", 1, 0, struct.pack(">QQIQHH", 0, 0, timescale, duration, _LANGUAGE_UND, 0))


def _hdlr(handler: bytes, name: bytes) -> bytes:
    return _full(b"hdlr", 0, 0, struct.pack(">I4s12x", 0, handler), name + b"\x00")


def _dinf() -> bytes:
    return _box(b"dinf", _full(b"dref", 0, 0, struct.pack(">I", 1), _full(b"url ", 0, 1)))


def _stbl(
    entry: bytes, delta: int, sample_size: int, chunks: Sequence[int], offsets: Sequence[int], wide: bool
) -> bytes:
    """A sample table: ``chunks[i]`` samples of ``sample_size`` bytes at ``offsets[i]``, ``delta`` ticks each.

    ``wide`` writes 64-bit chunk offsets (``co64``), needed once a file passes 4 GB.
    """
    count = sum(chunks)
    runs = [(i + 1, n) for i, n in enumerate(chunks) if i == 0 or n != chunks[i - 1]]
    stsd = _full(b"stsd", 0, 0, struct.pack(">I", 1), entry)
    stts = _full(b"stts", 0, 0, struct.pack(">III", 1, count, delta))
    stsc = _full(
        b"stsc", 0, 0, struct.pack(">I", len(runs)), *(struct.pack(">III", f, n, 1) for f, n in runs)
    )
    stsz = _full(b"stsz", 0, 0, struct.pack(">II", sample_size, count))
    if wide:
        stco = _full(
            b"co64", 0, 0, struct.pack(">I", len(offsets)), struct.pack(f">{len(offsets)}Q", *offsets)
        )
    else:
        stco = _full(
            b"stco", 0, 0, struct.pack(">I", len(offsets)), struct.pack(f">{len(offsets)}I", *offsets)
        )
    return _box(b"stbl", stsd, stts, stsc, stsz, stco)


# --------------------------------------------------------------------------------------------- H.264


class _Bits:
    """An MSB-first bit writer with the exp-Golomb codes of H.264."""

    def __init__(self) -> None:
        self._bits: list[int] = []

    def u(self, n: int, value: int) -> None:
        self._bits.extend((value >> (n - 1 - i)) & 1 for i in range(n))

    def ue(self, value: int) -> None:
        code = value + 1
        self.u(2 * code.bit_length() - 1, code)

    def se(self, value: int) -> None:
        self.ue(2 * value - 1 if value > 0 else -2 * value)

    def rbsp(self) -> bytes:
        """The bits with rbsp_trailing_bits, as bytes with emulation prevention applied."""
        bits = [*self._bits, 1]
        bits.extend([0] * (-len(bits) % 8))
        raw = bytes(int("".join(map(str, bits[i : i + 8])), 2) for i in range(0, len(bits), 8))
        out, zeros = bytearray(), 0
        for byte in raw:
            if zeros >= 2 and byte <= 3:
                out.append(3)
                zeros = 0
            out.append(byte)
            zeros = zeros + 1 if byte == 0 else 0
        return bytes(out)


def _sps(width: int, height: int) -> bytes:
    mbs_w, mbs_h = -(-width // 16), -(-height // 16)
    bits = _Bits()
    bits.u(8, 66)  # profile_idc: Baseline
    bits.u(8, 0xC0)  # constraint_set0 and constraint_set1
    bits.u(8, 40)  # level_idc 4.0
    bits.ue(0)  # seq_parameter_set_id
    bits.ue(0)  # log2_max_frame_num_minus4
    bits.ue(2)  # pic_order_cnt_type
    bits.ue(1)  # max_num_ref_frames
    bits.u(1, 0)  # gaps_in_frame_num_value_allowed_flag
    bits.ue(mbs_w - 1)
    bits.ue(mbs_h - 1)
    bits.u(1, 1)  # frame_mbs_only_flag
    bits.u(1, 1)  # direct_8x8_inference_flag
    crop_right, crop_bottom = (mbs_w * 16 - width) // 2, (mbs_h * 16 - height) // 2
    bits.u(1, 1 if crop_right or crop_bottom else 0)
    if crop_right or crop_bottom:
        for value in (0, crop_right, 0, crop_bottom):
            bits.ue(value)
    bits.u(1, 0)  # vui_parameters_present_flag
    return b"\x67" + bits.rbsp()


def _pps() -> bytes:
    bits = _Bits()
    bits.ue(0)  # pic_parameter_set_id
    bits.ue(0)  # seq_parameter_set_id
    bits.u(1, 0)  # entropy_coding_mode_flag: CAVLC
    bits.u(1, 0)  # bottom_field_pic_order_in_frame_present_flag
    bits.ue(0)  # num_slice_groups_minus1
    bits.ue(0)  # num_ref_idx_l0_default_active_minus1
    bits.ue(0)  # num_ref_idx_l1_default_active_minus1
    bits.u(1, 0)  # weighted_pred_flag
    bits.u(2, 0)  # weighted_bipred_idc
    bits.se(0)  # pic_init_qp_minus26
    bits.se(0)  # pic_init_qs_minus26
    bits.se(0)  # chroma_qp_index_offset
    bits.u(1, 1)  # deblocking_filter_control_present_flag
    bits.u(1, 0)  # constrained_intra_pred_flag
    bits.u(1, 0)  # redundant_pic_cnt_present_flag
    return b"\x68" + bits.rbsp()


def _idr(width: int, height: int) -> bytes:
    """One flat IDR picture: every macroblock I_16x16 with DC prediction and no residual."""
    bits = _Bits()
    bits.ue(0)  # first_mb_in_slice
    bits.ue(7)  # slice_type: I (all slices)
    bits.ue(0)  # pic_parameter_set_id
    bits.u(4, 0)  # frame_num
    bits.ue(0)  # idr_pic_id
    bits.u(1, 0)  # no_output_of_prior_pics_flag
    bits.u(1, 0)  # long_term_reference_flag
    bits.se(0)  # slice_qp_delta
    bits.ue(1)  # disable_deblocking_filter_idc
    for _ in range(-(-width // 16) * -(-height // 16)):
        bits.ue(3)  # mb_type I_16x16_2_0_0: DC prediction, no coded luma or chroma
        bits.ue(0)  # intra_chroma_pred_mode: DC
        bits.se(0)  # mb_qp_delta
        bits.u(1, 1)  # coeff_token of the Intra16x16DC block: no coefficients
    return b"\x65" + bits.rbsp()


def _avc1(width: int, height: int) -> bytes:
    sps, pps = _sps(width, height), _pps()
    avcc = _box(
        b"avcC",
        bytes([1, sps[1], sps[2], sps[3], 0xFF, 0xE1]),
        struct.pack(">H", len(sps)),
        sps,
        b"\x01",
        struct.pack(">H", len(pps)),
        pps,
    )
    entry = struct.pack(">6xH16xHHIIIH32sHh", 1, width, height, 0x480000, 0x480000, 0, 1, b"", 24, -1)
    return _box(b"avc1", entry, avcc)


def _video_sample(width: int, height: int, size: int) -> bytes:
    """One length-prefixed IDR NAL unit, padded to ``size`` bytes with filler-data NAL units."""
    idr = _idr(width, height)
    room = size - 4 - len(idr)
    if 0 < room < 6:  # too small for a filler NAL unit: trailing zero bytes after the picture instead
        return struct.pack(">I", len(idr) + room) + idr + bytes(room)
    pieces = [struct.pack(">I", len(idr)), idr]
    while room > 0:
        chunk = min(room, 1 << 20)
        if 0 < room - chunk < 6:
            chunk = room - 6
        body = b"\x0c" + b"\xff" * (chunk - 6) + b"\x80"
        pieces += [struct.pack(">I", len(body)), body]
        room -= chunk
    return b"".join(pieces)


def _descriptor(tag: int, body: bytes) -> bytes:
    return bytes([tag, len(body)]) + body


_AAC_RATES: Final = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350)


def _mp4a(rate: int, channels: int) -> bytes:
    index = _AAC_RATES.index(rate)
    config = ((2 << 11) | (index << 7) | (channels << 3)).to_bytes(2, "big")  # AAC LC
    decoder = _descriptor(
        0x04, bytes([0x40, 0x15]) + (6144).to_bytes(3, "big") + struct.pack(">II", 128000, 128000)
        + _descriptor(0x05, config)
    )  # fmt: skip
    es = _descriptor(0x03, struct.pack(">HB", 2, 0) + decoder + _descriptor(0x06, b"\x02"))
    entry = struct.pack(">6xH8xHHHHI", 1, channels, 16, 0, 0, rate << 16)
    return _box(b"mp4a", entry, _full(b"esds", 0, 0, es))


# --------------------------------------------------------------------------------------------- MP4


Tracks = Literal["av", "v", "a"]


@dataclass(frozen=True, slots=True)
class ClipSpec:
    """What an MP4-family clip holds.

    ``size`` is the whole file's length in bytes (the sample data grows or shrinks to fit, and the file is
    never smaller than its headers plus one byte per sample); ``None`` gives about 1 Mbit/s of video
    (128 kbit/s when audio-only). ``brand`` is the ``ftyp`` major brand: ``isom`` (MP4), ``qt  ``
    (QuickTime .mov), ``M4A `` (audio), ``3gp4`` (3GPP)...
    """

    duration: float = 10.0
    tracks: Tracks = "av"
    moov: Literal["start", "end"] = "start"
    size: int | None = None
    fps: float = 30.0
    width: int = 640
    height: int = 360
    sample_rate: int = 48000
    channels: int = 2
    brand: bytes = b"isom"

    def __post_init__(self) -> None:
        if not (math.isfinite(self.duration) and 0 < self.duration <= 86400):
            msg = f"duration must be a positive number of seconds up to a day, not {self.duration}"
            raise ValueError(msg)
        if self.width % 2 or self.height % 2 or not (16 <= self.width <= 8192 and 16 <= self.height <= 8192):
            msg = f"width and height must be even and between 16 and 8192 (got {self.width}x{self.height})"
            raise ValueError(msg)
        if not 1 <= self.fps <= 240:
            msg = f"fps must be between 1 and 240, not {self.fps}"
            raise ValueError(msg)
        if self.sample_rate not in _AAC_RATES or self.channels not in (1, 2):
            msg = f"sample_rate must be one of {_AAC_RATES} and channels 1 or 2"
            raise ValueError(msg)


_MAX_VIDEO_SAMPLE: Final = 1 << 20
_MAX_AUDIO_SAMPLE: Final = 1 << 14


def _per_chunk(total: int, per: int, chunks: int) -> list[int]:
    counts = [min(per, max(0, total - i * per)) for i in range(chunks)]
    return [n for n in counts if n]


@functools.lru_cache(maxsize=64)
def mp4_file(spec: ClipSpec) -> VirtualFile:
    """An MP4/MOV/M4A file as :class:`ClipSpec` describes it, its samples interleaved one second a chunk."""
    video, audio = "v" in spec.tracks, "a" in spec.tracks
    frames = max(1, round(spec.duration * spec.fps)) if video else 0
    audio_frames = max(1, math.ceil(spec.duration * spec.sample_rate / 1024)) if audio else 0
    per_v, per_a = max(1, round(spec.fps)), math.ceil(spec.sample_rate / 1024)
    n_chunks = max(-(-frames // per_v), -(-audio_frames // per_a))
    v_chunks, a_chunks = _per_chunk(frames, per_v, n_chunks), _per_chunk(audio_frames, per_a, n_chunks)
    idr_len = len(_video_sample(spec.width, spec.height, 0)) if video else 0
    target = (
        spec.size if spec.size is not None else int(spec.duration * (125_000 if video else 16_000)) + 4096
    )
    movie_ms = round(spec.duration * 1000)
    video_scale = round(spec.fps * 1000)
    wide = target >= 2**32 - 1

    def moov(v_offsets: Sequence[int], a_offsets: Sequence[int], v_size: int, a_size: int) -> bytes:
        traks = []
        if video:
            stbl = _stbl(_avc1(spec.width, spec.height), 1000, v_size, v_chunks, v_offsets, wide)
            minf = _box(b"minf", _full(b"vmhd", 0, 1, bytes(8)), _dinf(), stbl)
            mdia = _box(b"mdia", _mdhd(video_scale, frames * 1000), _hdlr(b"vide", b"VideoHandler"), minf)
            tkhd = _tkhd(1, movie_ms, audio=False, width=spec.width, height=spec.height)
            traks.append(_box(b"trak", tkhd, mdia))
        if audio:
            stbl = _stbl(_mp4a(spec.sample_rate, spec.channels), 1024, a_size, a_chunks, a_offsets, wide)
            minf = _box(b"minf", _full(b"smhd", 0, 0, bytes(4)), _dinf(), stbl)
            mdia = _box(
                b"mdia", _mdhd(spec.sample_rate, audio_frames * 1024), _hdlr(b"soun", b"SoundHandler"), minf
            )
            tkhd = _tkhd(2 if video else 1, movie_ms, audio=True, width=0, height=0)
            traks.append(_box(b"trak", tkhd, mdia))
        return _box(b"moov", _mvhd(1000, movie_ms, len(traks) + 1), *traks)

    compatible = {b"isom": b"isomiso2avc1mp41", b"qt  ": b"qt  ", b"M4A ": b"M4A mp42isom"}
    ftyp = _box(
        b"ftyp", spec.brand, struct.pack(">I", 0x200), compatible.get(spec.brand, spec.brand + b"isom")
    )
    big = 2**32 if wide else 0
    index_len = len(moov([big] * len(v_chunks), [big] * len(a_chunks), 1, 1))
    mdat_head_len = 16 if wide else 8
    room = max(0, target - len(ftyp) - index_len - mdat_head_len)
    a_size = max(1, min(_MAX_AUDIO_SAMPLE, room // 10 // audio_frames)) if audio else 0
    if not video:
        a_size = max(1, min(_MAX_AUDIO_SAMPLE, room // audio_frames))
    v_size = max(idr_len, min(_MAX_VIDEO_SAMPLE, (room - a_size * audio_frames) // frames)) if video else 0
    samples = frames * v_size + audio_frames * a_size
    pad = max(0, room - samples)
    mdat_len = mdat_head_len + samples + pad
    mdat_head = struct.pack(">I4sQ", 1, b"mdat", mdat_len) if wide else struct.pack(">I4s", mdat_len, b"mdat")
    at = len(ftyp) + (index_len if spec.moov == "start" else 0) + mdat_head_len
    v_offsets: list[int] = []
    a_offsets: list[int] = []
    body: list[tuple[tuple[tuple[bytes, int], ...], int]] = []
    v_piece = _video_sample(spec.width, spec.height, v_size) if video else b""
    a_piece = bytes(a_size)
    for i in range(n_chunks):
        v_n = v_chunks[i] if i < len(v_chunks) else 0
        a_n = a_chunks[i] if i < len(a_chunks) else 0
        if v_n:
            v_offsets.append(at)
        if a_n:
            a_offsets.append(at + v_n * v_size)
        at += v_n * v_size + a_n * a_size
        unit = tuple((piece, n) for piece, n in ((v_piece, v_n), (a_piece, a_n)) if n)
        length = v_n * v_size + a_n * a_size
        if body and body[-1][0] == unit:
            body[-1] = (unit, body[-1][1] + length)
        else:
            body.append((unit, length))
    index = moov(v_offsets, a_offsets, v_size, a_size)
    assert len(index) == index_len, "the index changed size between layout and writing"
    data: list[Part] = [Filler(length, unit) for unit, length in body]
    if pad:
        data.append(Filler(pad))
    head: tuple[Part, ...] = (ftyp, index, mdat_head) if spec.moov == "start" else (ftyp, mdat_head)
    tail: tuple[Part, ...] = () if spec.moov == "start" else (index,)
    content_type = {b"qt  ": "video/quicktime", b"M4A ": "audio/mp4"}.get(
        spec.brand, "video/mp4" if video else "audio/mp4"
    )
    if spec.brand.startswith(b"3gp"):
        content_type = "video/3gpp"
    return VirtualFile((*head, *data, *tail), content_type)


# --------------------------------------------------------------------------------------------- audio


def wav_file(
    duration: float, *, sample_rate: int = 44100, channels: int = 1, size: int | None = None
) -> VirtualFile:
    """PCM 16-bit silence lasting ``duration`` seconds (``size`` pads the file with a trailing chunk)."""
    block = 2 * channels
    data = round(duration * sample_rate) * block
    fmt = _riff_chunk(
        b"fmt ", struct.pack("<HHIIHH", 1, channels, sample_rate, sample_rate * block, block, 16)
    )
    parts: list[Part] = [b"", fmt, b"data" + struct.pack("<I", data), Filler(data)]
    extra = (size - (12 + len(fmt) + 8 + data)) if size is not None else 0
    if extra >= 8:
        parts.append(b"free" + struct.pack("<I", extra - 8))
        parts.append(Filler(extra - 8))
    riff_size = 4 + sum(len(p) if isinstance(p, bytes) else p.length for p in parts)
    parts[0] = b"RIFF" + struct.pack("<I", min(riff_size, 2**32 - 1)) + b"WAVE"
    return VirtualFile(tuple(parts), "audio/wav")


def _riff_chunk(kind: bytes, body: bytes) -> bytes:
    return kind + struct.pack("<I", len(body)) + body + (b"\x00" if len(body) % 2 else b"")


_MP3_FRAME: Final = 384  # MPEG-1 Layer III, 128 kbit/s, 48 kHz: 144 * 128000 / 48000 bytes, no padding
_MP3_SAMPLES: Final = 1152


def mp3_file(duration: float) -> VirtualFile:
    """MPEG-1 Layer III silence (mono, 48 kHz, 128 kbit/s CBR) led by an ``Info`` frame with the frame count."""
    frames = max(1, math.ceil(duration * 48000 / _MP3_SAMPLES))
    header = b"\xff\xfb\x94\xc4"  # sync, MPEG-1, Layer III, no CRC; 128 kbit/s, 48 kHz; mono, original
    side_info = bytes(17)
    info = b"Info" + struct.pack(">III", 0x3, frames, (frames + 1) * _MP3_FRAME)
    first = header + side_info + info
    first += bytes(_MP3_FRAME - len(first))
    frame = header + bytes(_MP3_FRAME - 4)
    return VirtualFile((first, Filler(frames * _MP3_FRAME, ((frame, 1),))), "audio/mpeg")


# --------------------------------------------------------------------------------------------- pages


def html_page(name: str = "clip.mp4") -> VirtualFile:
    """A cloud drive's "share" page for ``name``: what a link copied from a browser often serves."""
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<title>{name} - Shared file</title></head>\n<body><div class="viewer">'
        f"<h1>{name}</h1><p>You need access. Sign in to preview or download this file.</p>"
        '<a href="/signin">Sign in</a></div></body></html>\n'
    )
    return VirtualFile((page.encode(),), "text/html; charset=utf-8")


def json_page() -> VirtualFile:
    """An API error body where a file was expected."""
    return VirtualFile(
        (b'{"error":{"code":403,"message":"The caller does not have permission"}}\n',), "application/json"
    )


def text_page() -> VirtualFile:
    return VirtualFile(
        (b"Access denied. This link has expired or was never shared.\n",), "text/plain; charset=utf-8"
    )


def concat(parts: Sequence[bytes], content_type: str) -> VirtualFile:
    """A file of the given bytes."""
    return VirtualFile(tuple(parts), content_type)
