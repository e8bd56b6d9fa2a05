"""Writes media made to exhaust a decoder's memory, small on disk (issue 13 item 1):

- png16.png: a 10000 x 10000 16-bit RGB PNG (600 MB decoded, about 0.6 MB on disk);
- gif_frame.gif: a GIF whose screen is 100 x 100 and whose first frame declares 65535 x 65535;
- wav64.wav: a 64-channel 16-bit WAV, 0.1 s at 8 kHz;
- apng_frame.png: an APNG whose canvas is 100 x 100 and whose second frame declares
  65535 x 65535 (only the default image is decoded);
- tiff_float.tif: a 10000 x 10000 TIFF of 32-bit float RGB (1.2 GB decoded, a header on disk);
- tiff_pages.tif: a TIFF whose first page is 100 x 100 RGB and whose second declares
  30000 x 30000 (only the first page is decoded).

Usage: make_hostile_media.py OUTDIR; prints the JSON list of the files written.
"""

import json
import os
import struct
import sys
import zlib


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png16(path: str, side: int = 10000) -> None:
    header = struct.pack(">IIBBBBB", side, side, 16, 2, 0, 0, 0)
    row = b"\0" * (1 + side * 6)  # filter byte, then 6 bytes per pixel
    squeeze = zlib.compressobj(9)
    rows = row * 100
    idat = b"".join(squeeze.compress(rows) for _ in range(side // 100)) + squeeze.flush()
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat))
        f.write(chunk(b"IEND", b""))


def apng_frame(path: str) -> None:
    header = struct.pack(">IIBBBBB", 100, 100, 8, 2, 0, 0, 0)
    rows = zlib.compress((b"\0" + bytes(range(100)) * 3) * 100)

    def fctl(sequence: int, width: int, height: int) -> bytes:
        return chunk(b"fcTL", struct.pack(">IIIIIHHBB", sequence, width, height, 0, 0, 1, 10, 0, 0))

    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header))
        f.write(chunk(b"acTL", struct.pack(">II", 2, 0)) + fctl(0, 100, 100))
        f.write(chunk(b"IDAT", rows) + fctl(1, 65535, 65535))
        f.write(chunk(b"fdAT", struct.pack(">I", 2) + zlib.compress(b"\0" * 64)))
        f.write(chunk(b"IEND", b""))


def gif_frame(path: str) -> None:
    screen = b"GIF89a" + struct.pack("<HHBBB", 100, 100, 0x80, 0, 0) + b"\0\0\0\xff\xff\xff"
    frame = b"\x2c" + struct.pack("<HHHHB", 0, 0, 65535, 65535, 0)
    # LZW minimum code size 2, one sub-block: clear, one pixel, end of information.
    data = b"\x02\x02\x44\x01\x00"
    with open(path, "wb") as f:
        f.write(screen + frame + data + b"\x3b")


def wav64(path: str, channels: int = 64, rate: int = 8000, frames: int = 800) -> None:
    data = b"\0\0" * channels * frames
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * channels * 2, channels * 2, 16)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", len(data)) + data
    with open(path, "wb") as f:
        f.write(b"RIFF" + struct.pack("<I", len(body)) + body)


def tiff_ifd(width: int, height: int, bits: int, float_samples: bool, strip: int, strip_bytes: int,
             extra: int, next_ifd: int) -> tuple:
    """A little-endian TIFF IFD of one uncompressed RGB strip, and the bytes it points to
    (BitsPerSample and SampleFormat arrays), to be placed at offset `extra`."""
    arrays = struct.pack("<HHH", bits, bits, bits) + struct.pack("<HHH", 3, 3, 3)
    entries = [
        (256, 4, 1, width),
        (257, 4, 1, height),
        (258, 3, 3, extra),
        (259, 3, 1, 1),
        (262, 3, 1, 2),
        (273, 4, 1, strip),
        (277, 3, 1, 3),
        (278, 4, 1, height),
        (279, 4, 1, strip_bytes),
    ]
    if float_samples:
        entries.append((339, 3, 3, extra + 6))
    ifd = struct.pack("<H", len(entries))
    for tag, kind, count, value in entries:
        packed = struct.pack("<HHI", tag, kind, count)
        if kind == 3 and count == 1:
            packed += struct.pack("<HH", value, 0)
        else:
            packed += struct.pack("<I", value)
        ifd += packed
    return ifd + struct.pack("<I", next_ifd), arrays


def tiff_float(path: str, side: int = 10000) -> None:
    ifd, arrays = tiff_ifd(side, side, 32, True, 0, 0, 0, 0)
    extra = 8 + len(ifd)
    strip = extra + len(arrays)
    ifd, arrays = tiff_ifd(side, side, 32, True, strip, side * side * 12, extra, 0)
    with open(path, "wb") as f:
        f.write(b"II*\0" + struct.pack("<I", 8) + ifd + arrays + b"\0" * 64)


def tiff_pages(path: str) -> None:
    first, arrays = tiff_ifd(100, 100, 8, False, 0, 0, 0, 0)
    extra = 8 + len(first)
    strip = extra + len(arrays)
    second_at = strip + 100 * 100 * 3
    second_at += second_at % 2
    first, arrays = tiff_ifd(100, 100, 8, False, strip, 100 * 100 * 3, extra, second_at)
    second, arrays2 = tiff_ifd(30000, 30000, 8, False, 0, 0, 0, 0)
    extra2 = second_at + len(second)
    second, arrays2 = tiff_ifd(30000, 30000, 8, False, extra2 + len(arrays2), 30000 * 30000 * 3, extra2, 0)
    pixels = bytes((x * 7 + y * 3) % 256 for y in range(100) for x in range(300))
    body = b"II*\0" + struct.pack("<I", 8) + first + arrays + pixels
    body += b"\0" * (second_at - len(body))
    with open(path, "wb") as f:
        f.write(body + second + arrays2 + b"\0" * 64)


def main() -> None:
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    written = []
    for name, make in [
        ("png16.png", png16),
        ("gif_frame.gif", gif_frame),
        ("apng_frame.png", apng_frame),
        ("wav64.wav", wav64),
        ("tiff_float.tif", tiff_float),
        ("tiff_pages.tif", tiff_pages),
    ]:
        make(os.path.join(out, name))
        written.append(name)
    print(json.dumps(written))


if __name__ == "__main__":
    main()
