# The two entry points of README.md, plus conveniences. Both install what is
# missing first, so a fresh Debian 12 machine needs nothing else.
BUILD     ?= build        # optimized build: demo, benchmarks
SAN_BUILD ?= build-san    # AddressSanitizer + UBSan build: the test suite
BUILD     := $(strip $(BUILD))
SAN_BUILD := $(strip $(SAN_BUILD))

.PHONY: all deps build build-san demo check bench clean

all: build

deps:
	@bash scripts/install-deps.sh

build: deps
	@test -f $(BUILD)/build.ninja || meson setup $(BUILD) --buildtype=release -Dtests=false >/dev/null
	@ninja -C $(BUILD) >$(BUILD)/ninja.log || (cat $(BUILD)/ninja.log; exit 1)

build-san: deps
	@test -f $(SAN_BUILD)/build.ninja || meson setup $(SAN_BUILD) -Db_sanitize=address,undefined \
		-Db_lundef=false >/dev/null
	@ninja -C $(SAN_BUILD)

demo: build
	@bash scripts/demo.sh $(BUILD)

check: build-san
	@bash scripts/run-tests.sh $(SAN_BUILD)

bench: build
	@bash bench/run.sh $(BUILD)

clean:
	rm -rf $(BUILD) $(SAN_BUILD)
