"""Reference resampling: Pillow's Image.resize on raw 8-bit planes.

Reads a JSON list of jobs from argv[1]; each job names a raw plane (`input`, `width`, `height`),
the output size and filter (`box`, `bicubic`, `lanczos`), and the file to write the resized raw
plane to. Prints {"done": N}.

    python tests/python/resample_reference.py JOBS.json
"""
import json
import sys

from PIL import Image

FILTERS = {"box": Image.BOX, "bicubic": Image.BICUBIC, "lanczos": Image.LANCZOS}


def main():
    jobs = json.load(open(sys.argv[1]))
    for job in jobs:
        data = open(job["input"], "rb").read()
        img = Image.frombytes("L", (job["width"], job["height"]), data)
        out = img.resize((job["out_width"], job["out_height"]), FILTERS[job["filter"]])
        open(job["output"], "wb").write(out.tobytes())
    print(json.dumps({"done": len(jobs)}))


if __name__ == "__main__":
    main()
