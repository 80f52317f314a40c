package v1beta1

// TLSEnabled reports whether the spec asks for TLS.
func (s *ETCDInstanceSpec) TLSEnabled() bool {
	return s.TLS != nil && s.TLS.Enabled
}
