"""Parse YAML files with PyYAML and print their documents as JSON.

Prints {"FILE": [doc, ...], ...} to stdout; a file that is not valid YAML fails with PyYAML's
message (line and column).

    python tests/python/read_yaml.py FILE...
"""
import json
import sys

import yaml

documents = {}
for path in sys.argv[1:]:
    with open(path, encoding="utf-8") as f:
        documents[path] = [doc for doc in yaml.safe_load_all(f) if doc is not None]
json.dump(documents, sys.stdout)
