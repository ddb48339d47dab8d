# Two commands from a fresh clone:  make demo   and   make test
# Each creates .venv if it is missing and installs requirements.txt into it first.
# make reproduce runs every experiment's default (CPU-sized) run in turn, writes figures and tables under
# out/, keeps each script's printed output in out/logs/, and ends with a summary of the verdicts.
PYTHON_SYS ?= python3
VENV       := .venv
PY         := $(VENV)/bin/python
STAMP      := $(VENV)/.installed
# The TinyStories run needs the 1.9 GB corpus (docs/data.md); offline, the stand-in corpus is used.
# Set TINYSTORIES= (empty) to train on the real TinyStories instead.
TINYSTORIES ?= --synthetic
SHELL       := /bin/bash
.SHELLFLAGS := -o pipefail -c   # a failing script stops `make reproduce` even though tee succeeds

.PHONY: demo test reproduce verdicts clean gpu-check

$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON_SYS) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.txt
	touch $(STAMP)

demo: $(STAMP)
	$(PY) train_poly.py

test: $(STAMP)
	$(PY) -m pytest -q tests

reproduce: $(STAMP)
	mkdir -p out/logs
	$(PY) train_poly.py                              2>&1 | tee out/logs/train_poly.log
	$(PY) mlp.py                                     2>&1 | tee out/logs/mlp.log
	$(PY) train_mnist.py --dataset fashion           2>&1 | tee out/logs/train_mnist.log
	$(PY) eigen.py --dataset fashion                 2>&1 | tee out/logs/eigen.log
	$(PY) train_tinystories.py $(TINYSTORIES)        2>&1 | tee out/logs/train_tinystories.log
	$(PY) train_memory.py                            2>&1 | tee out/logs/train_memory.log
	$(PY) kernel_sqs.py --table5 --max-size 1024     2>&1 | tee out/logs/table5.log
	@$(MAKE) --no-print-directory verdicts

# The verdict lines of every log in out/logs/ (written by `make reproduce`), one section per script.
VERDICT_LINES := ^verdict|^- .*(HOLDS|PARTLY|DOES NOT HOLD|NOT TESTED|TIED)|^- (Table 1.s final|final accuracy, ours)|^final loss, lowest|^SQS / SwiGLU
verdicts:
	@echo; echo "== verdicts (full output in out/logs/) =="
	@for f in train_poly mlp train_mnist eigen train_tinystories train_memory table5; do \
	  echo "-- $$f"; \
	  test -f out/logs/$$f.log || { echo "(no log: run make reproduce)"; continue; }; \
	  grep -hE "$(VERDICT_LINES)" out/logs/$$f.log || echo "(no verdict line found)"; \
	done

# On a CUDA machine: kernel tests compiled, both kernel scripts, Table 5, the --quick runs with the
# fused kernels; logs and a summary in out/gpu/ (docs/kernels.md). Any python with torch + triton:
# .venv/bin/python if present, else python3 (GPU_PY=... to choose); no venv install needed.
gpu-check:
	@.ci/gpu-check

clean:
	rm -rf out __pycache__ tests/__pycache__ .pytest_cache
