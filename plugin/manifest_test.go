//go:build !yaegi
// +build !yaegi

package llmtap

import (
	"bufio"
	"context"
	"net/http"
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// TestManifestTestDataIsAccepted: the plugin catalogue calls New with the
// testData of .traefik.yml; it must be valid. The root module has no YAML
// library, so this reads the manifest's simple testData block by hand
// (scalars and lists, two-space indents) and decodes it as Traefik does:
// field names matched case-insensitively.
func TestManifestTestDataIsAccepted(t *testing.T) {
	f, err := os.Open("../.traefik.yml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	data := map[string][]string{}
	var key string
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "testData:":
			in = true
		case in && strings.HasPrefix(line, "    - "):
			data[key] = append(data[key], strings.TrimPrefix(line, "    - "))
		case in && strings.HasPrefix(line, "  ") && strings.Contains(line, ":"):
			k, v, _ := strings.Cut(strings.TrimSpace(line), ":")
			key = k
			if v = strings.TrimSpace(v); v != "" {
				data[k] = []string{v}
			}
		case in && strings.TrimSpace(line) != "":
			in = false
		}
	}
	if len(data) == 0 {
		t.Fatal("no testData in .traefik.yml")
	}
	c := CreateConfig()
	v := reflect.ValueOf(c).Elem()
	for k, vals := range data {
		field := v.FieldByNameFunc(func(n string) bool { return strings.EqualFold(n, k) })
		if !field.IsValid() {
			t.Fatalf("testData key %q is no Config field", k)
		}
		switch field.Kind() {
		case reflect.String:
			field.SetString(vals[0])
		case reflect.Int:
			n, err := strconv.Atoi(vals[0])
			if err != nil {
				t.Fatalf("testData %s: %v", k, err)
			}
			field.SetInt(int64(n))
		case reflect.Slice:
			field.Set(reflect.ValueOf(vals))
		default:
			t.Fatalf("testData %s: unhandled kind %s", k, field.Kind())
		}
	}
	if _, err := c.validate("catalogue"); err != nil {
		t.Fatalf("New would reject the manifest's testData: %v", err)
	}
	if h, err := New(context.Background(), http.NotFoundHandler(), c, "catalogue"); err != nil || h == nil {
		t.Fatalf("New: %v", err)
	}
}

// TestConfigurationDocListsEveryOption: docs/configuration.md names every
// option of Config, nested ones as parent.child.
func TestConfigurationDocListsEveryOption(t *testing.T) {
	doc, err := os.ReadFile("../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	var walk func(reflect.Type, string)
	walk = func(typ reflect.Type, prefix string) {
		for i := 0; i < typ.NumField(); i++ {
			f := typ.Field(i)
			name := prefix + strings.Split(f.Tag.Get("json"), ",")[0]
			if f.Type.Kind() == reflect.Struct {
				walk(f.Type, name+".")
				continue
			}
			if !strings.Contains(string(doc), "| `"+name+"` |") {
				t.Errorf("docs/configuration.md has no row for the plugin option %s", name)
			}
		}
	}
	walk(reflect.TypeOf(Config{}), "")
}
