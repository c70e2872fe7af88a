/* main.c: the ncsn executable. */
#include "ncsn/cli.h"

int main(int argc, char **argv) { return cli_main(argc, argv); }
