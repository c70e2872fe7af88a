#include "ncsn/cli.h"
#include "ncsn/common.h"
int cmd_train(const Options *o) { (void)o; ncsn_die_usage("train: not built yet"); }
