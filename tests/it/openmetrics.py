#!/usr/bin/env python3
"""Parses OpenMetrics text (stdin) with the Prometheus project's own Python parser
(prometheus_client.openmetrics.parser, strict: it rejects a malformed exposition) and
prints its samples as JSON lines: {"name", "labels", "value", "type"}.

Exit 1 with the parser's message on stderr when the text does not parse."""
import json
import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families

text = sys.stdin.read()
try:
    families = list(text_string_to_metric_families(text))
except Exception as err:  # the parser raises ValueError and friends
    print(f"openmetrics parse error: {err}", file=sys.stderr)
    sys.exit(1)
for family in families:
    for sample in family.samples:
        print(json.dumps({
            "name": sample.name,
            "labels": sample.labels,
            "value": sample.value,
            "type": family.type,
        }))
