"""Writes media made to exhaust a decoder's memory, small on disk (issue 13 item 1):

- png16.png: a 10000 x 10000 16-bit RGB PNG (600 MB decoded, about 0.6 MB on disk);
- gif_frame.gif: a GIF whose screen is 100 x 100 and whose first frame declares 65535 x 65535;
- wav64.wav: a 64-channel 16-bit WAV, 0.1 s at 8 kHz.

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


def main() -> None:
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    written = []
    for name, make in [("png16.png", png16), ("gif_frame.gif", gif_frame), ("wav64.wav", wav64)]:
        make(os.path.join(out, name))
        written.append(name)
    print(json.dumps(written))


if __name__ == "__main__":
    main()
