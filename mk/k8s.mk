# surge: the container image and the Kubernetes/KEDA configuration.
#   make image        build docker.io/library/surge:$(IMAGE_VERSION) with podman or docker
#   make kind-load    load that image into a kind cluster (KIND_CLUSTER=surge)
#   make k8s-render   render every overlay into build/k8s/rendered/
#   make k8s-secrets  make secrets/ (git-ignored) from k8s/secrets.example
#   make test-k8s     the manifest checks and the image test (test/k8s)
# docs/kubernetes.md walks through a deployment.

IMAGE_VERSION := 0.1.0
IMAGE         := docker.io/library/surge:$(IMAGE_VERSION)
KIND_CLUSTER  ?= surge
# Every kustomization that must render; test/k8s renders the same list.
K8S_TARGETS   := k8s/base k8s k8s/overlays/production k8s/overlays/kind keda keda/kind

# KEDA's CRD schemas come from its Go module at a pinned version, downloaded
# by the go command into a project-local module cache under build/.
KEDA_VERSION  := $(shell cat test/k8s/keda.version)
K8S_GOPATH    := $(CURDIR)/build/go
KEDA_MODULE   := build/k8s/keda-module.json
CHECKOV_VENV  := build/checkov-venv

.PHONY: image kind-load k8s-render k8s-secrets keda-crds checkov test-k8s

image:
	scripts/image-build.sh $(IMAGE)

kind-load: image
	@if command -v podman >/dev/null; then \
	    . scripts/podman-env.sh && mkdir -p build && rm -f build/surge-image.tar && \
	    podman save -o build/surge-image.tar $(IMAGE) && \
	    kind load image-archive --name $(KIND_CLUSTER) build/surge-image.tar; \
	else kind load docker-image --name $(KIND_CLUSTER) $(IMAGE); fi

k8s-render:
	@mkdir -p build/k8s/rendered
	@for t in $(K8S_TARGETS); do \
	    out=build/k8s/rendered/$$(echo $$t | tr / -).yaml; \
	    kubectl kustomize $$t > $$out && echo "$$t -> $$out"; \
	done

k8s-secrets:
	scripts/k8s-secrets.sh secrets

keda-crds: $(KEDA_MODULE)
$(KEDA_MODULE): test/k8s/keda.version
	@command -v go >/dev/null || { echo "keda-crds: the go command is needed to fetch KEDA's CRDs" >&2; exit 1; }
	@mkdir -p $(dir $@)
	GOPATH=$(K8S_GOPATH) GOMODCACHE=$(K8S_GOPATH)/pkg/mod GOFLAGS=-modcacherw GO111MODULE=on \
	    go mod download -json github.com/kedacore/keda/v2@$(KEDA_VERSION) > $@.tmp
	mv $@.tmp $@

checkov: $(CHECKOV_VENV)/.installed
$(CHECKOV_VENV)/.installed: test/k8s/checkov-requirements.txt
	python3 -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install -q --disable-pip-version-check -r $<
	touch $@

test-k8s: venv keda-crds checkov
	scripts/install-deps.sh image
	SURGE_KEDA_MODULE=$(KEDA_MODULE) SURGE_CHECKOV=$(CHECKOV_VENV)/bin/checkov \
	SURGE_IMAGE=$(IMAGE) $(PYTEST) -q test/k8s

test-extra:: test-k8s
