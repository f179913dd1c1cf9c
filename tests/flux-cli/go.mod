// A module of its own only so that `go mod download` has a place to run;
// build.sh builds the flux CLI from its own module source.
module herald.test/flux-cli

go 1.26.0
