# semseg_ros: `make demo` and `make test` are the two commands a new user needs.
# The first use creates .venv and installs everything from requirements.txt.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# vision_msgs is not on PyPI: generated into .venv from its interface definitions
# (third_party/vision_msgs) with the ROS interface tooling that requirements.txt installs.
VISION_MSGS := $(VENV)/.vision_msgs
VISION_MSGS_BUILD := $(VENV)/build/vision_msgs
ENV := $(STAMP) $(VISION_MSGS)

# Keep DDS discovery on this machine; tests pick their own ROS_DOMAIN_ID per process.
export ROS_AUTOMATIC_DISCOVERY_RANGE := LOCALHOST
export ROS_LOG_DIR := $(CURDIR)/log/ros
export ROS_HOME := $(CURDIR)/log/ros_home

.PHONY: all venv test test-fast lint demo bench clean

all: test

venv: $(ENV)

$(STAMP): requirements.txt setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	# The optional ORB-SLAM3 part (GPL-3.0), so that its tests run: setup.py's slam extra.
	$(PY) -m pip install --quiet --no-build-isolation -e '.[slam]'
	touch $(STAMP)

# cmake and gcc build the C type support and Python bindings (about 2 minutes on 2 cores);
# installed into .venv's lib/ and site-packages, as the message wheels are.
$(VISION_MSGS): $(STAMP) third_party/vision_msgs/CMakeLists.txt third_party/vision_msgs/package.xml \
		$(wildcard third_party/vision_msgs/msg/*.msg)
	@command -v cmake > /dev/null && command -v cc > /dev/null || { echo 'make: generating' \
		'vision_msgs needs cmake and a C compiler (Debian: apt-get install cmake gcc g++)' >&2; \
		exit 1; }
	rm -rf $(VISION_MSGS_BUILD)
	PATH="$(abspath $(VENV))/bin:$$PATH" AMENT_PREFIX_PATH="$(abspath $(VENV))" \
	CMAKE_PREFIX_PATH="$(abspath $(VENV))" cmake -S third_party/vision_msgs \
		-B $(VISION_MSGS_BUILD) --log-level=WARNING -DCMAKE_BUILD_TYPE=Release \
		-DBUILD_TESTING=OFF -DCMAKE_INSTALL_PREFIX="$(abspath $(VENV))" \
		-DPython3_EXECUTABLE="$(abspath $(PY))"
	cmake --build $(VISION_MSGS_BUILD) -j $$(nproc) -- --no-print-directory > /dev/null
	cmake --install $(VISION_MSGS_BUILD) > /dev/null
	$(PY) -c 'from vision_msgs.msg import LabelInfo; LabelInfo()'
	rm -rf $(VISION_MSGS_BUILD)
	touch $(VISION_MSGS)

# Everything (CI): real DDS, training, colcon build; about 15 minutes on 2 cores.
test: $(ENV)
	$(PY) -m pytest -q test

# Unit tests only: no DDS, nothing that trains or builds for minutes; in one process per
# core (at most 4: each holds torch), sharing one graph cache.
TEST_WORKERS ?= $(shell n=$$(nproc); echo $$(( n < 4 ? n : 4 )))
test-fast: $(ENV)
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist worksteal -m "not dds and not slow" test

lint: $(ENV)
	$(PY) -m pytest -q test/test_lint.py

bench: $(ENV)
	$(VENV)/bin/semseg bench --model all

demo: $(ENV)
	$(PY) -m semseg_ros.commands.demo --out demo_out

clean:
	rm -rf build install log demo_out .pytest_cache
