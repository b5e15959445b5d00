// Command manifest-check validates the project's Kubernetes manifests with Kubernetes's own
// code: every document is decoded strictly into its k8s.io/api type (an unknown or misspelt
// field, or a value of the wrong type, is an error, as the API server's strict field
// validation reports it), and every pod template is evaluated against the Restricted level of
// the Pod Security Standards by the pod-security-admission library the API server runs.
//
//	manifest-check FILE...
//
// Prints one JSON object per document ({"file","kind","name","problems"}) and exits 1 when any
// document has a problem.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	psaapi "k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"
	"sigs.k8s.io/yaml"
)

type result struct {
	File     string   `json:"file"`
	Kind     string   `json:"kind"`
	Name     string   `json:"name"`
	Problems []string `json:"problems"`
}

// The kinds the project ships, each with a fresh value to decode into.
var kinds = map[string]func() any{
	"v1/ConfigMap":                       func() any { return &corev1.ConfigMap{} },
	"v1/Secret":                          func() any { return &corev1.Secret{} },
	"v1/Service":                         func() any { return &corev1.Service{} },
	"v1/ServiceAccount":                  func() any { return &corev1.ServiceAccount{} },
	"v1/PersistentVolumeClaim":           func() any { return &corev1.PersistentVolumeClaim{} },
	"apps/v1/Deployment":                 func() any { return &appsv1.Deployment{} },
	"apps/v1/StatefulSet":                func() any { return &appsv1.StatefulSet{} },
	"networking.k8s.io/v1/NetworkPolicy": func() any { return &networkingv1.NetworkPolicy{} },
	"policy/v1/PodDisruptionBudget":      func() any { return &policyv1.PodDisruptionBudget{} },
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: manifest-check FILE...")
		os.Exit(2)
	}
	evaluator, err := policy.NewEvaluator(policy.DefaultChecks(), nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	restricted := psaapi.LevelVersion{Level: psaapi.LevelRestricted, Version: psaapi.LatestVersion()}
	failed := false
	out := json.NewEncoder(os.Stdout)
	for _, file := range os.Args[1:] {
		docs, err := documents(file)
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", file, err)
			os.Exit(2)
		}
		for _, doc := range docs {
			r := check(file, doc, evaluator, restricted)
			if len(r.Problems) > 0 {
				failed = true
			}
			_ = out.Encode(r)
		}
	}
	if failed {
		os.Exit(1)
	}
}

// documents splits a YAML stream at its `---` separators, dropping empty documents.
func documents(file string) ([][]byte, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	reader := utilyaml.NewYAMLReader(bufio.NewReader(f))
	var docs [][]byte
	for {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, err
		}
		var probe map[string]any
		if err := yaml.Unmarshal(doc, &probe); err != nil {
			return nil, err
		}
		if len(probe) > 0 {
			docs = append(docs, bytes.Clone(doc))
		}
	}
}

func check(file string, doc []byte, evaluator policy.Evaluator, level psaapi.LevelVersion) result {
	var meta struct {
		metav1.TypeMeta   `json:",inline"`
		metav1.ObjectMeta `json:"metadata"`
	}
	r := result{File: file, Problems: []string{}}
	if err := yaml.Unmarshal(doc, &meta); err != nil {
		r.Problems = append(r.Problems, err.Error())
		return r
	}
	r.Kind, r.Name = meta.Kind, meta.Name
	if meta.Name == "" {
		r.Problems = append(r.Problems, "metadata.name is empty")
	}
	newObject, ok := kinds[meta.APIVersion+"/"+meta.Kind]
	if !ok {
		r.Problems = append(r.Problems, fmt.Sprintf("unknown kind %s/%s", meta.APIVersion, meta.Kind))
		return r
	}
	obj := newObject()
	if err := yaml.UnmarshalStrict(doc, obj); err != nil {
		r.Problems = append(r.Problems, "strict decoding: "+err.Error())
		return r
	}
	var template *corev1.PodTemplateSpec
	var selector *metav1.LabelSelector
	switch o := obj.(type) {
	case *appsv1.Deployment:
		template, selector = &o.Spec.Template, o.Spec.Selector
	case *appsv1.StatefulSet:
		template, selector = &o.Spec.Template, o.Spec.Selector
	}
	if template == nil {
		return r
	}
	if selector == nil {
		r.Problems = append(r.Problems, "spec.selector is missing")
	} else {
		for k, v := range selector.MatchLabels {
			if template.Labels[k] != v {
				r.Problems = append(r.Problems, fmt.Sprintf("selector %s=%s does not match the pod template's labels", k, v))
			}
		}
	}
	results := evaluator.EvaluatePod(level, &template.ObjectMeta, &template.Spec)
	for _, c := range results {
		if !c.Allowed {
			r.Problems = append(r.Problems, fmt.Sprintf("pod security (restricted): %s: %s", c.ForbiddenReason, c.ForbiddenDetail))
		}
	}
	return r
}
