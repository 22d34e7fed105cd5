# Thin wrappers: every target is a script you can also run directly.
.PHONY: demo test bench setup images charts clean

demo:            ## build images and run the job-queue demo in podman pods (Ctrl-C cleans up)
	scripts/demo.sh

test:            ## every test of the project (installs what is missing)
	scripts/test.sh

bench:           ## every benchmark; prints figures
	scripts/bench.sh

setup:           ## install tools only (helm 3/4, validators, podman, PostgreSQL, Redis)
	tools/setup.sh

images:          ## build the berth and jobqueue images with podman
	scripts/build-images.sh

charts:          ## package, sign, push and render both charts: make charts SIGN_KEY=... KEYRING=secring.gpg REGISTRY=oci://... (see scripts/charts-release.sh --help)
	scripts/charts-release.sh

clean:
	cargo clean
