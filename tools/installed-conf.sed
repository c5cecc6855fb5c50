# `make install` turns conf/greygate.conf (an example that runs from a
# source tree, as whoever starts it) into the copy it installs as
# /etc/greygate/greygate.conf: the state, socket and pid file under
# /var/lib/greygate and /run/greygate (the directories conf/greygate.service
# makes), the unprivileged user greygate, and production greylisting.
# test/functional/test_install.py checks that every line below matched.
1i\
# Installed by `make install` (or the Debian package) from greygate's\
# conf/greygate.conf. Edit it, check it with `greygate -t -c FILE`, then\
# start greygate (greygate(8), greygate.conf(5)). The Debian package keeps\
# greygate from starting until /etc/greygate/unconfigured is removed.\

s|^\(  *file = \)"build/greylist.db";.*|\1"/var/lib/greygate/greylist.db";|
s|^control_socket = "build/greygate.sock";.*|control_socket = "/run/greygate/control.sock";|
s|^run_as_root = true;.*|user = "greygate"; group = "greygate"; pid_file = "/run/greygate/greygate.pid";|
s|^\(  *delay = \)30;.*|\1300;                      # seconds before a retry passes|
s|^reject_unknown_sender_domain = false;|reject_unknown_sender_domain = true;|
s|^\(# this file must be readable by it)\)\. This example runs from a source tree,$|\1.|
/^# as whoever starts it:$/d
s|^\(# 550 5.1.8 / 450 4.1.8 / null MX 550 5.7.27\.\) Production: true\. Off in this$|\1|
/^# example so that a first try works on a machine without DNS\.$/d
