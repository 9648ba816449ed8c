// Package interop runs our code against CometD peers nobody here wrote.
package interop
