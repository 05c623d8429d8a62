package clickhouse

import "testing"

func TestParseVersion(t *testing.T) {
	tests := []struct {
		in      string
		want    Version
		wantErr bool
	}{
		{in: "18.16.1", want: Version{18, 16, 1}},
		{in: "24.8.4.13", want: Version{24, 8, 4}},
		{in: "25.3.1.2703-lts", want: Version{25, 3, 1}},
		{in: "23.8.2.7-stable\n", want: Version{23, 8, 2}},
		{in: "20.1", want: Version{20, 1, 0}},
		{in: "26.7.1-rc", want: Version{26, 7, 1}},
		{in: "", wantErr: true},
		{in: "18", wantErr: true},
		{in: "x.16.1", wantErr: true},
		{in: "18.y", wantErr: true},
	}
	for _, tt := range tests {
		got, err := ParseVersion(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseVersion(%q) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestVersionAtLeast(t *testing.T) {
	v := Version{20, 1, 2}
	for _, c := range []struct {
		major, minor int
		want         bool
	}{{20, 1, true}, {20, 2, false}, {19, 17, true}, {21, 0, false}} {
		if got := v.AtLeast(c.major, c.minor); got != c.want {
			t.Errorf("%s.AtLeast(%d, %d) = %v", v, c.major, c.minor, got)
		}
	}
}
