# Shortcuts for the scripts in hack/ (the scripts are what README.md and CI use; see docs/layout.md).
.PHONY: run test e2e status down standalone setup unit
run:        ## the main job: local cluster (or KUBECONFIG), operator, examples
	bash hack/run.sh
test:       ## every test tier (what .ci/run runs)
	bash hack/test.sh
e2e:        ## the *E2E suite on a fresh local cluster, torn down afterwards
	bash hack/local/e2e.sh
status:     ## the local VMs' status
	bash hack/run.sh status
down:       ## remove the local cluster
	bash hack/run.sh down
standalone: ## no containers: real kube-apiserver, node pods as local processes, checked
	bash hack/run.sh standalone --check
setup:      ## install and build what the tiers need (cached under ~/.cache/vfiovm)
	bash hack/setup.sh
unit:       ## the unit tier of every module
	mvn -B verify -DskipITs
