#!/usr/bin/env bash
# AutoGluon in its own virtualenv, never a dependency of kdistill: the peer side of
# benchmarks/peers/vs_autogluon.py. Usage: bash benchmarks/peers/setup_autogluon.sh [VENV]
# (default benchmarks/peers/.venv-autogluon). The torch 2.13 CPU build first, as in the
# project's own setup (AutoGluon's range, < 2.14, admits it), then autogluon.tabular 1.6.x
# with the LightGBM, CatBoost and XGBoost extras.
set -euo pipefail
VENV="${1:-$(dirname "$0")/.venv-autogluon}"
PYTHON="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q torch==2.13.0
"$VENV/bin/python" -m pip install -q 'autogluon.tabular[lightgbm,catboost,xgboost]==1.6.*'
"$VENV/bin/python" -c "import autogluon.tabular as ag; print('autogluon.tabular', ag.__version__)"
