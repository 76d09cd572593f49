module rlkube/toolchain/kube/pause

go 1.26.0
