package monitoring

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

type dashboard struct {
	UID           string  `json:"uid"`
	Title         string  `json:"title"`
	SchemaVersion int     `json:"schemaVersion"`
	Panels        []panel `json:"panels"`
	Templating    struct {
		List []struct {
			Name  string          `json:"name"`
			Type  string          `json:"type"`
			Query json.RawMessage `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	} `json:"datasource"`
	GridPos *struct {
		H, W, X, Y int
	} `json:"gridPos"`
	Targets []struct {
		Expr  string `json:"expr"`
		RefID string `json:"refId"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // of a collapsed row
	row    string  // the title of the row the panel is in
}

// loadDashboard parses dashboard.json and returns it with its panels in order, the
// panels of collapsed rows included, each knowing its row.
func loadDashboard(t *testing.T) (dashboard, []panel) {
	t.Helper()
	var d dashboard
	data := readFile(t, "deploy/monitoring/dashboard.json")
	if !json.Valid(data) {
		t.Fatal("dashboard.json is not valid JSON")
	}
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("dashboard.json: %v", err)
	}
	var all []panel
	row := ""
	for _, p := range d.Panels {
		if p.Type == "row" {
			row = p.Title
		}
		p.row = row
		all = append(all, p)
		for _, q := range p.Panels {
			q.row = row
			all = append(all, q)
		}
	}
	return d, all
}

// labelValuesQuery is a Grafana query variable: label_values(<selector>, <label>).
var labelValuesQuery = regexp.MustCompile(`^label_values\((.+),\s*\w+\)$`)

func dashboardExpressions(t *testing.T) []expression {
	t.Helper()
	d, panels := loadDashboard(t)
	var exprs []expression
	for _, p := range panels {
		for _, tg := range p.Targets {
			exprs = append(exprs, expression{
				where: fmt.Sprintf("dashboard panel %d %q query %s", p.ID, p.Title, tg.RefID),
				expr:  tg.Expr, dashboard: true,
			})
		}
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q struct {
			Query string `json:"query"`
		}
		if err := json.Unmarshal(v.Query, &q); err != nil {
			t.Fatalf("dashboard variable %s: %v", v.Name, err)
		}
		m := labelValuesQuery.FindStringSubmatch(q.Query)
		if m == nil {
			t.Fatalf("dashboard variable %s: query %q is not label_values(selector, label)", v.Name, q.Query)
		}
		exprs = append(exprs, expression{where: "dashboard variable " + v.Name, expr: m[1]})
	}
	return exprs
}

// TestDashboard: the dashboard is valid JSON with what Grafana needs to place and query
// each panel, uses the datasource variable everywhere, and has the panels an operator
// looks for, in their rows.
func TestDashboard(t *testing.T) {
	d, panels := loadDashboard(t)
	if d.UID == "" || d.Title == "" || d.SchemaVersion == 0 {
		t.Errorf("dashboard uid %q, title %q, schemaVersion %d: all must be set", d.UID, d.Title, d.SchemaVersion)
	}
	vars := map[string]string{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v.Type
	}
	if vars["datasource"] != "datasource" || vars["namespace"] != "query" {
		t.Errorf("dashboard variables %v, want datasource (datasource) and namespace (query)", vars)
	}

	ids := map[int]bool{}
	titles := map[string]string{} // title → row
	var placed []panel
	for _, p := range panels {
		where := fmt.Sprintf("panel %d %q", p.ID, p.Title)
		if p.ID == 0 || ids[p.ID] {
			t.Errorf("%s: id missing or not unique", where)
		}
		ids[p.ID] = true
		if p.Title == "" {
			t.Errorf("%s: no title", where)
		}
		if p.GridPos == nil || p.GridPos.W <= 0 || p.GridPos.H <= 0 || p.GridPos.X < 0 || p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("%s: gridPos %+v outside the 24 columns", where, p.GridPos)
		} else {
			placed = append(placed, p)
		}
		if p.Type == "row" {
			continue
		}
		if _, dup := titles[p.Title]; dup {
			t.Errorf("%s: title not unique", where)
		}
		titles[p.Title] = p.row
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
			t.Errorf("%s: datasource %+v, want uid ${datasource}", where, p.Datasource)
		}
		if len(p.Targets) == 0 {
			t.Errorf("%s: no query", where)
		}
		refs := map[string]bool{}
		for _, tg := range p.Targets {
			if tg.Expr == "" || tg.RefID == "" || refs[tg.RefID] {
				t.Errorf("%s: query %q with refId %q: both must be set, refIds unique", where, tg.Expr, tg.RefID)
			}
			refs[tg.RefID] = true
		}
	}
	for i, a := range placed {
		for _, b := range placed[i+1:] {
			ga, gb := a.GridPos, b.GridPos
			if ga.X < gb.X+gb.W && gb.X < ga.X+ga.W && ga.Y < gb.Y+gb.H && gb.Y < ga.Y+ga.H {
				t.Errorf("panels %q and %q overlap", a.Title, b.Title)
			}
		}
	}

	// What the operator looks for, by row.
	for row, want := range map[string][]string{
		"Throughput": {"Lines written per second", "Bytes written per second"},
		"Streams":    {"Streams active and desired", "Targets by state", "Oldest waiting container"},
		"Lag":        {"Lag (kubelet timestamp to file writer)"},
		"Errors":     {"Reconnects per second by reason", "Gaps by reason", "Write errors by reason"},
		"Disk":       {"Output bytes", "Backups deleted by reason"},
	} {
		for _, title := range want {
			got, ok := titles[title]
			switch {
			case !ok:
				t.Errorf("no panel %q", title)
			case got != row:
				t.Errorf("panel %q is in row %q, want %q", title, got, row)
			}
		}
	}
}

// grafanaVariables are replaced by values of their kind before promtool parses a query.
var grafanaVariables = strings.NewReplacer(
	"$__rate_interval", "2m",
	"${__rate_interval}", "2m",
	"$__interval", "1m",
	"${__interval}", "1m",
	"$__range", "6h",
	"${namespace}", "kubelogd",
	"$namespace", "kubelogd",
)

// TestDashboardPromQL: every query of the dashboard, its variables replaced, parses as
// PromQL. promtool has no offline parse command, so each becomes a recording rule of a
// generated rule file, which promtool check rules parses.
func TestDashboardPromQL(t *testing.T) {
	_, panels := loadDashboard(t)
	type rec struct {
		Record string `json:"record"`
		Expr   string `json:"expr"`
	}
	type group struct {
		Name  string `json:"name"`
		Rules []rec  `json:"rules"`
	}
	var groups []group
	n := 0
	for _, p := range panels {
		if len(p.Targets) == 0 {
			continue
		}
		g := group{Name: fmt.Sprintf("panel %d: %s", p.ID, p.Title)}
		for _, tg := range p.Targets {
			expr := grafanaVariables.Replace(tg.Expr)
			if strings.Contains(expr, "$") {
				t.Errorf("panel %q query %s: unknown variable in %q", p.Title, tg.RefID, tg.Expr)
				continue
			}
			g.Rules = append(g.Rules, rec{Record: fmt.Sprintf("dashboard:panel_%d:%s", p.ID, strings.ToLower(tg.RefID)), Expr: expr})
			n++
		}
		groups = append(groups, g)
	}
	// JSON is YAML: promtool reads the file as a rule file.
	data, err := json.MarshalIndent(map[string]any{"groups": groups}, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "dashboard-rules.yaml"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := promtool(t, dir, "check", "rules", "--lint=none", "dashboard-rules.yaml")
	if err != nil {
		t.Fatalf("the dashboard's queries do not all parse: %v\n%s", err, out)
	}
	if want := fmt.Sprintf("SUCCESS: %d rules found", n); !strings.Contains(out, want) {
		t.Errorf("promtool check rules: %q, want %q", out, want)
	}
}
