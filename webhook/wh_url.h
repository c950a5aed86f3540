/*  wh_url.h - a webhook URL as logs and error messages show it.

    A submitter's webhook URL may carry secrets: a password in its userinfo
    (http://user:pw@host/) or a token in its query string (?token=...).
    Those never reach a log line: the password is masked (user:***@), a
    userinfo without a password is masked whole (a bare token: ***@), and
    every query value and the fragment are masked (?token=***&x=***#***),
    and so is the path past its first segment, where Slack and Discord put
    their tokens (/services/ then ***).  Scheme, host, port, the path's
    first segment and the query's names are kept, so a line still says
    where a delivery went.  Pure: no I/O.  */
#ifndef WH_URL_H
#define WH_URL_H

#include <stdbool.h>

//  The URL with its secrets masked, as a new string (caller frees), or
//  NULL if out of memory.
char *wh_url_redacted (const char *url);

void wh_url_test (bool verbose);

#endif
