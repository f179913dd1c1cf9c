package main

// `kube-apiserver-harness kstatus`: reads objects (one JSON object per
// line) on standard input and prints, for each, the status kstatus
// (sigs.k8s.io/cli-utils/pkg/kstatus) computes, as Flux's health checks and
// `kubectl wait`-style tools read it: {"status": "...", "message": "..."}.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type kstatusResult struct {
	Status  string `json:"status"`
	Message string `json:"message"`
	Error   string `json:"error,omitempty"`
}

func runKstatus() error {
	scanner := bufio.NewScanner(os.Stdin)
	scanner.Buffer(make([]byte, 1<<20), 16<<20)
	out := json.NewEncoder(os.Stdout)
	for scanner.Scan() {
		if len(scanner.Bytes()) == 0 {
			continue
		}
		var object map[string]interface{}
		// Numbers as int64 where they are integers, as unstructured wants.
		if err := utiljson.Unmarshal(scanner.Bytes(), &object); err != nil {
			return fmt.Errorf("read an object: %w", err)
		}
		result := kstatusResult{}
		computed, err := status.Compute(&unstructured.Unstructured{Object: object})
		if err != nil {
			result.Error = err.Error()
		} else {
			result.Status = computed.Status.String()
			result.Message = computed.Message
		}
		if err := out.Encode(result); err != nil {
			return err
		}
	}
	return scanner.Err()
}
