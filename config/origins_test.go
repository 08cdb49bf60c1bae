package config

import (
	"reflect"
	"strings"
	"testing"
)

func TestWSOrigins(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  string
		want []string
	}{
		{nil, "", nil},
		{nil, "https://a.example", []string{"https://a.example"}},
		{nil, " https://a.example ,HTTP://B.example:8080", []string{"https://a.example", "HTTP://B.example:8080"}},
		{[]string{"-ws-origins", "https://c.example"}, "https://a.example", []string{"https://c.example"}}, // the flag replaces the environment's list
		{[]string{"-ws-origins", ""}, "https://a.example", nil},                                            // and an empty one allows any again
		{[]string{"-ws-origins", "https://a.example", "-ws-origins", "https://b.example"}, "", []string{"https://b.example"}},
	} {
		c, err := Parse(tc.args, envOf(map[string]string{"LONGLINK_WS_ORIGINS": tc.env}))
		if err != nil {
			t.Errorf("Parse(%q, LONGLINK_WS_ORIGINS=%q): %v", tc.args, tc.env, err)
			continue
		}
		if !reflect.DeepEqual(c.WSOrigins, tc.want) {
			t.Errorf("Parse(%q, LONGLINK_WS_ORIGINS=%q): WSOrigins = %q, want %q", tc.args, tc.env, c.WSOrigins, tc.want)
		}
	}
}

func TestWSOriginsInvalid(t *testing.T) {
	for value, want := range map[string]string{
		"https://a.example/":         `-ws-origins "https://a.example/": want scheme://host[:port], without a path`,
		"a.example":                  `-ws-origins "a.example": want scheme://host[:port]`,
		"null":                       `-ws-origins "null"`,
		"https://a.example,":         `-ws-origins "": want scheme://host[:port]`,
		"https://a.example:99999":    `-ws-origins "https://a.example:99999": port "99999"`,
		"https://user@a.example":     "without user info",
		"https://a.example/,ftp:x,b": `-ws-origins "ftp:x"`,
	} {
		_, err := Parse([]string{"-ws-origins", value}, nil)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("-ws-origins %q: err = %v, want it to mention %q", value, err, want)
		}
	}
	// Every bad entry is reported, each naming the flag.
	_, err := Parse(nil, envOf(map[string]string{"LONGLINK_WS_ORIGINS": "https://ok.example,bad1,https://ok2.example/x"}))
	if err == nil || !strings.Contains(err.Error(), `-ws-origins "bad1"`) || !strings.Contains(err.Error(), `-ws-origins "https://ok2.example/x"`) {
		t.Errorf("two bad entries: err = %v, want both named", err)
	}
}
