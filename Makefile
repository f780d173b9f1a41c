# semseg_ros: `make demo` and `make test` are the two commands a new user needs.
# The first use creates .venv and installs everything from requirements.txt.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# Keep DDS discovery on this machine; tests pick their own ROS_DOMAIN_ID per process.
export ROS_AUTOMATIC_DISCOVERY_RANGE := LOCALHOST
export ROS_LOG_DIR := $(CURDIR)/log/ros
export ROS_HOME := $(CURDIR)/log/ros_home

.PHONY: all venv test test-fast lint demo bench clean

all: test

venv: $(STAMP)

$(STAMP): requirements.txt setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	# The optional ORB-SLAM3 part (GPL-3.0), so that its tests run: setup.py's slam extra.
	$(PY) -m pip install --quiet --no-build-isolation -e '.[slam]'
	touch $(STAMP)

# Everything (CI): real DDS, training, colcon build; about 7 minutes on 2 cores.
test: $(STAMP)
	$(PY) -m pytest -q test

# Unit tests only: no DDS, nothing that trains or builds for minutes.
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not dds and not slow" test

lint: $(STAMP)
	$(PY) -m pytest -q test/test_lint.py

bench: $(STAMP)
	$(VENV)/bin/semseg bench --model all

demo: $(STAMP)
	$(PY) -m semseg_ros.commands.demo --out demo_out

clean:
	rm -rf build install log demo_out .pytest_cache
