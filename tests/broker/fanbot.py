#!/usr/bin/python3
"""fanbot.py - a bot for the fan-in tests.  Given {"i": I, "padBytes": N}
its result is {"i": I, "pad": N bytes of "x"}; given its dependencies'
results (dependencyResults: {"payload": ..., "dependencies": {id: result}})
its result names each dependency's i and pad size ([i, size], null for no
result), so that a fan-in of many large results answers small."""
import json
import sys

given = json.load(sys.stdin)
if isinstance(given, dict) and "dependencies" in given:
    deps = given["dependencies"]
    print(json.dumps({"deps": {k: None if v is None else [v["i"], len(v["pad"])]
                               for k, v in deps.items()}}))
else:
    print(json.dumps({"i": given["i"], "pad": "x" * given["padBytes"]}))
