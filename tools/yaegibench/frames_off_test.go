//go:build !yaegiframes

package yaegibench

// frames counts nothing: only a build against a copy of Yaegi that counts
// frames can (scripts/yaegi-frames.sh, frames_test.go).
func frames(int) {}
