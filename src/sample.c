#include "ncsn/cli.h"
#include "ncsn/common.h"
int cmd_sample(const Options *o) { (void)o; ncsn_die_usage("sample: not built yet"); }
