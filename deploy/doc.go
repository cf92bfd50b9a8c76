// Package deploy holds callgate's deployment files and the tests that check them.
package deploy
