# Shortcuts for the commands in the README. Every target is one script call.
PY ?= python

.PHONY: install demo preprocess train-original train-balanced train-posweight compare interpret report pipeline test lint bench bench-gpu study-gpu

install:            ## exact, tested environment (+ the package, editable)
	pip install -r requirements_dev.txt

demo:               ## synthetic RSNA-layout dataset in data/demo
	$(PY) scripts/make_demo_data.py --out data/demo

preprocess:         ## DICOMs -> data/Processed (real data if present, else the demo)
	$(PY) scripts/preprocess.py

train-original:
	$(PY) scripts/train_original.py

train-balanced:
	$(PY) scripts/train_balanced.py

train-posweight:    ## the third imbalance remedy: BCE positive-class weight
	$(PY) scripts/train_original.py --pos-weight auto --run-name posweight

compare:
	$(PY) scripts/compare.py

interpret:
	$(PY) scripts/interpret.py --weights weights/balanced/best.pth --save-maps
	$(PY) scripts/interpret.py --weights weights/original/best.pth --save-maps

report:             ## the offline page images/index.html and the CAM gallery
	$(PY) scripts/report.py

pipeline:           ## the whole study, resumable
	$(PY) scripts/run_pipeline.py

test:
	pytest

lint:
	ruff check src scripts tests benchmarks notebooks

bench:              ## CPU benchmarks, each printing a ratio against its baseline
	$(PY) benchmarks/bench_preprocess.py
	$(PY) benchmarks/bench_train.py
	$(PY) benchmarks/bench_cam.py
	$(PY) benchmarks/bench_eval.py
	$(PY) benchmarks/bench_report.py

study-gpu:          ## the RSNA-size study timed stage by stage on a CUDA machine
	bash benchmarks/gpu_study.sh

bench-gpu:          ## the GPU measurements reported in the README (needs CUDA)
	bash benchmarks/gpu_bench.sh
