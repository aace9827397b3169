#!/usr/bin/env bash
# Opens a report.html in headless Chromium and fails (exit 1) on any console error,
# uncaught exception, Content-Security-Policy violation or failed resource load; saves a
# full-page screenshot. Exit 2: the check could not run (no browser, bad arguments).
#
#   benches/check_report_html.sh REPORT_HTML [SCREENSHOT_PNG]
#
# The browser is $CHROMIUM, else `chromium` or `chromium-browser` on PATH, else Debian's
# `chromium` package installed here with apt-get (when running as root).
set -euo pipefail

if [[ $# -lt 1 || $# -gt 2 ]]; then
    echo "usage: $0 REPORT_HTML [SCREENSHOT_PNG]" >&2
    exit 2
fi
html=$1
png=${2:-${html%.html}.png}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

chromium=${CHROMIUM:-}
if [[ -z $chromium ]]; then
    for candidate in chromium chromium-browser; do
        if command -v "$candidate" >/dev/null; then
            chromium=$(command -v "$candidate")
            break
        fi
    done
fi
if [[ -z $chromium ]]; then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
        echo "check_report_html: chromium not found; installing it with apt-get" >&2
        apt-get update -q >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >&2
        chromium=$(command -v chromium)
    else
        echo "check_report_html: chromium not found: run 'apt-get install chromium'" \
            "(or set CHROMIUM to a Chrome/Chromium binary)" >&2
        exit 2
    fi
fi

exec python3 "$here/check_report_html.py" "$chromium" "$html" "$png"
