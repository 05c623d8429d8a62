// Package repocheck holds tests of the repository itself: that the README
// tells a newcomer the tree as it is.
package repocheck
