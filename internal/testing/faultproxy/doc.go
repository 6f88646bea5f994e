// Package faultproxy puts a controllable proxy between a client and a server on loopback, to
// break their connections on purpose: a TCP proxy (Proxy) that cuts, stalls, slows or refuses
// connections, and a TLS-terminating HTTP reverse proxy (HTTPProxy) that answers chosen
// requests with an error, such as 410 Gone to a watch, or aborts them mid-response.
package faultproxy
