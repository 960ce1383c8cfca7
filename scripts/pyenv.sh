#!/usr/bin/env bash
# A virtualenv with the official Python `kubernetes` client for the apiserver suite, in
# $PYENV (default _out/pyenv); idempotent: nothing happens when the client already imports.
set -euo pipefail

PYENV=${PYENV:-_out/pyenv}
VERSION=33.1.0

if [ -x "$PYENV/bin/python" ] && "$PYENV/bin/python" -c "import kubernetes" 2>/dev/null; then
	echo "deps: python kubernetes client present ($PYENV)"
	exit 0
fi
python3 -m venv "$PYENV"
"$PYENV/bin/pip" install --quiet --disable-pip-version-check "kubernetes==$VERSION"
echo "deps: python kubernetes client $VERSION installed in $PYENV"
