/*
 * supervisor: greygate with `workers = N` (N > 1 or "auto").
 *
 * The supervisor binds the listen addresses once per worker (SO_REUSEPORT:
 * the kernel spreads connections between the workers' sockets), starts
 * each worker as a fresh process (fork and exec, so nothing of the
 * supervisor's loop leaks into it) that inherits its sockets, restarts a
 * worker that dies, and forwards SIGHUP and SIGTERM. It owns the embedded
 * store when that is the store in use (workers ask it over a socket pair;
 * one owner keeps the state consistent) and its control socket. Limits on
 * connections are split evenly between the workers (see listener.c).
 */
#ifndef GG_SUPERVISOR_H
#define GG_SUPERVISOR_H

/* Expects srv.cfg loaded; returns the exit status. */
int supervisor_run(const char *argv0);

#endif
