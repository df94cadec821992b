package scenario

import (
	"errors"
	"time"
)

// Placeholders, replaced by the implementation.

var errTODO = errors.New("scenario: not implemented yet")

func parse(path string, data []byte) (*File, error)                  { return nil, errTODO }
func label(s *Step) string                                           { return s.Action }
func errorString(e Error) string                                     { return e.Msg }
func errorsString(e *Errors) string                                  { return "invalid scenario" }
func expand(raw string, lookup Lookup) (string, error)               { return raw, errTODO }
func resolvedUint(r Resolved, key string) (uint64, error)            { return 0, errTODO }
func resolvedDuration(r Resolved, key string) (time.Duration, error) { return 0, errTODO }
func resolvedData(r Resolved) ([]byte, bool, error)                  { return nil, false, errTODO }
func resolve(path string, args Args, lookup Lookup) (Resolved, error) {
	return Resolved{}, errTODO
}
func check(expect *Resolved, o Outcome) []string { return []string{errTODO.Error()} }
