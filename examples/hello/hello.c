/* Hello world, as in the HermitCore guide's prog.c. */
#include <stdio.h>

int main(int argc, char **argv)
{
	printf("hello world!\n");
	printf("argv[] = %s\n", argv[0]);
	return 0;
}
